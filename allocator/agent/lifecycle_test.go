package agent_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/allocator/runtime/process"
	"github.com/physarum-p2p/physarum/allocator/runtimetest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry/registrytest"
)

// A deploy that arrives while the allocator stops is refused: Close has
// listed the instances to stop, and one admitted after that would outlive
// the allocator.
func TestDeployDuringStopLeavesNoProcess(t *testing.T) {
	w := newWorld(t)
	n := p2ptest.Start(t, p2ptest.Spec{Bootstraps: []peer.AddrInfo{w.reg.Node.AddrInfo()}})
	if err := n.Bootstrapped(t.Context()); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "instances")
	rt, err := process.New(process.Options{Dir: dir, Logger: p2ptest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	a, err := agent.New(t.Context(), n.Node, registrytest.Client(t, n), []runtime.Runtime{rt}, agent.Config{
		CPU: 4000, Memory: 4096, ProxyPath: w.proxy, LeaseTTL: 3 * time.Second, StatusEvery: 100 * time.Millisecond,
		StartTimeout: 20 * time.Second, Logger: p2ptest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	w.service("late", 10, 0, nil)

	reached, release := make(chan struct{}), make(chan struct{})
	agent.SetAdmitHook(a, func() { close(reached); <-release })
	deployed := make(chan error, 1)
	go func() { _, err := w.deploy(n, "late", false); deployed <- err }()
	<-reached // the deploy has passed every check and is about to admit
	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	eventually.Succeeds(t, 10*time.Second, func() error {
		if !agent.Closing(a) {
			return errors.New("Close has not begun")
		}
		return nil
	})
	close(release)
	err = <-deployed
	if wire.CodeOf(err) != wire.CodeUnavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("a deploy during shutdown: %v; want it refused as shutting down", err)
	}
	<-closed
	_ = rt.Close()
	if left := proctest.KillUnder(dir); left > 0 {
		t.Fatalf("%d processes of the deploy outlived the allocator", left)
	}
}

// A process service whose command exists nowhere fails once, with that
// reason; the requests that follow are refused at once (the requester
// tries another node) instead of each creating a failed instance.
func TestMissingCommandFailsOncePerBackoff(t *testing.T) {
	w := newWorld(t)
	_, node := w.allocator(allocOpts{cfg: agent.Config{StartBackoff: time.Minute}})
	info := registry.ServiceInfo{Exec: &registry.ExecConf{Command: "no-such-command-physarum"}, CpuReq: 10, MemoryReq: 16}
	if _, err := w.rc.AddService(t.Context(), "missing", info); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		_, err := w.deploy(node, "missing", true)
		if wire.CodeOf(err) != wire.CodeRuntimeError || !strings.Contains(err.Error(), `"no-such-command-physarum" is not on the allocator's PATH`) {
			t.Fatalf("deploy %d: %v; want the missing command as the reason", i, err)
		}
		if i > 0 && !strings.Contains(err.Error(), "not trying again here for") {
			t.Fatalf("deploy %d was not refused by the backoff: %v", i, err)
		}
	}
	insts, err := w.rc.ListInstances(t.Context(), "missing")
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 1 || insts[0].State != registry.StateFailed {
		t.Fatalf("20 deploys left %d instance records, want 1 failed: %+v", len(insts), insts)
	}
	t.Logf("reported: %s", insts[0].Message)
}

// A bare command is found on the allocator's PATH, as a shell finds it.
func TestBareCommandIsFoundOnThePath(t *testing.T) {
	w := newWorld(t)
	_, node := w.allocator(allocOpts{})
	// The test task, by its bare name, on a PATH of the allocator's.
	t.Setenv("PATH", filepath.Dir(w.task)+":"+os.Getenv("PATH"))
	info := registry.ServiceInfo{Exec: &registry.ExecConf{Command: filepath.Base(w.task), Env: map[string]string{
		runtimetest.EnvTask: runtimetest.ModeHTTP, runtimetest.EnvPort: "${SERVICE_PORT}", runtimetest.EnvReply: "found"}},
		CpuReq: 10, MemoryReq: 16}
	if _, err := w.rc.AddService(t.Context(), "bare", info); err != nil {
		t.Fatal(err)
	}
	resp, err := w.deploy(node, "bare", false)
	if err != nil {
		t.Fatal(err)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		got, err := w.get(*resp.Instance)
		if err != nil || got != "found" {
			return fmt.Errorf("GET: %q, %w", got, err)
		}
		return nil
	})
}
