package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

// TestUserFlowSurvivesEveryKindOfProcessDying is the first hour of a user,
// then a bad day: every kind of process is killed in turn and restarted,
// and the service keeps answering through the client proxy.
func TestUserFlowSurvivesEveryKindOfProcessDying(t *testing.T) {
	n := newNetwork(t)
	reg := n.registry()
	allocs := []*proctest.Proc{n.allocator("alloc1"), n.allocator("alloc2")}
	n.addHello()
	proxy, base := n.proxy()

	first := hello(t, base, 30*time.Second)
	insts := n.instances("hello")
	if len(insts) != 1 || insts[0].State != registry.StateRunning {
		t.Fatalf("after the first request: %+v", insts)
	}
	t.Logf("first answer: %q", first)

	t.Run("instance", func(t *testing.T) {
		// Kill the service process: its runtime restarts it.
		pids := pidsWithEnv("PHYSARUM_INSTANCE_ID=" + insts[0].ID)
		if len(pids) != 2 {
			t.Fatalf("%d processes for the instance", len(pids))
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		hello(t, base, 30*time.Second)
	})

	t.Run("client proxy", func(t *testing.T) {
		proxy.Kill()
		proxy.Restart()
		proxy.WaitOutput(launch.ProxyReady, 30*time.Second)
		hello(t, base, 30*time.Second)
	})

	t.Run("allocator", func(t *testing.T) {
		var owner *proctest.Proc
		for _, a := range allocs {
			if peerID(a) == insts[0].Node {
				owner = a
			}
		}
		if owner == nil {
			t.Fatalf("no allocator runs %s (node %s)", insts[0].ID, insts[0].Node)
		}
		// (Killing the instance above may have made the proxy start a
		// second one: count what there is now.)
		before := n.instances("hello")
		owner.Kill()
		hello(t, base, 10*time.Second) // its instance lives on
		owner.Restart()
		owner.WaitOutput("1 instances adopted", 30*time.Second)
		hello(t, base, 10*time.Second)
		after := n.instances("hello")
		if len(after) != len(before) || !hasInstance(after, insts[0].ID) {
			t.Fatalf("the restart changed the instances: before %+v, after %+v", before, after)
		}
	})

	t.Run("registry", func(t *testing.T) {
		reg.Kill()
		// Routing goes on from what the proxy already knows.
		hello(t, base, 10*time.Second)
		reg.Restart()
		reg.WaitOutput(launch.RegistryReady, time.Minute)
		if !strings.Contains(reg.Stdout(), "restarting etcd member from") {
			t.Fatal("the registry did not restart from its data dir")
		}
		// And the registry is whole again: the service is still there.
		out := n.mustCLI("list")
		if !strings.Contains(out, "hello") {
			t.Fatalf("after the registry's restart:\n%s", out)
		}
		hello(t, base, 30*time.Second)
	})
}

// peerID returns the peer ID a daemon printed at start.
func peerID(p *proctest.Proc) string {
	for _, line := range strings.Split(p.Stdout(), "\n") {
		if id, ok := strings.CutPrefix(line, "peer ID "); ok {
			return id
		}
	}
	return ""
}

func hasInstance(insts []registry.Instance, id string) bool {
	for _, in := range insts {
		if in.ID == id {
			return true
		}
	}
	return false
}
