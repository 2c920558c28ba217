package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/allocator/runtimetest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

// These tests run the binaries as a user does: registry-service, allocators,
// registry-cli and a client proxy, each its own process.

type world struct {
	t    *testing.T
	bins map[string]string
	boot string
	env  []string
}

func startNet(t *testing.T) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test; skipped with -short")
	}
	pkgs := []string{"./registry-service", "./allocator", "./proxy", "./registry-cli", "./allocator/runtimetest/testtask"}
	proctest.Build(t, pkgs...)
	n := &world{t: t, bins: map[string]string{}}
	for _, p := range pkgs {
		n.bins[filepath.Base(p)] = proctest.Build(t, p)
	}
	n.env = []string{"P2P_PSK=" + p2ptest.DefaultPassphrase, nodeflags.EnvFastTiming + "=1"}
	dir := t.TempDir()
	r := launch.Registry{Node: launch.Node{AddrFile: filepath.Join(dir, "addr")}, DataDir: filepath.Join(dir, "data"), UnsafeNoFsync: true}
	reg := proctest.Start(t, "registry", n.bins["registry-service"], r.Args(), n.env)
	n.boot = reg.Ready(launch.RegistryReady, time.Minute, r.AddrFile)
	n.env = append(n.env, nodeflags.EnvBootstraps+"="+n.boot)
	return n
}

// allocator starts an allocator process named name (its -name too) with
// its own key and data dir.
func (n *world) allocator(name string, extra ...string) *proctest.Proc {
	n.t.Helper()
	p := proctest.Start(n.t, name, n.bins["allocator"], n.allocatorArgs(name, extra...), n.env)
	p.WaitOutput(launch.AllocatorReady, 30*time.Second)
	return p
}

// allocatorArgs is the command line of an allocator named name with its
// own key and data dir.
func (n *world) allocatorArgs(name string, extra ...string) []string {
	dir := n.t.TempDir()
	return launch.Allocator{
		Node: launch.Node{KeyFile: filepath.Join(dir, "key"), LogLevel: "debug"}, Name: name,
		DataDir: filepath.Join(dir, "data"), Runtime: "process", Proxy: n.bins["proxy"], Extra: extra,
	}.Args()
}

func (n *world) cli(args ...string) string {
	n.t.Helper()
	out, errs, code := proctest.Run(n.t, n.bins["registry-cli"], append([]string{"-ephemeral"}, args...), n.env, time.Minute)
	if code != 0 {
		n.t.Fatalf("registry-cli %v: exit %d: %s", args, code, errs)
	}
	return out
}

func (n *world) cliJSON(v any, args ...string) {
	n.t.Helper()
	out := n.cli(append([]string{"-json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		n.t.Fatalf("registry-cli %v: %v\n%s", args, err, out)
	}
}

// addService registers the test task as an HTTP service.
func (n *world) addService(name string) {
	n.t.Helper()
	cfg := fmt.Sprintf(`{"CpuReq":100,"MemoryReq":16,"Exec":{"Command":%q,"Env":{%q:%q,%q:"${SERVICE_PORT}",%q:"hello from %s"}}}`,
		n.bins["testtask"], runtimetest.EnvTask, runtimetest.ModeHTTP, runtimetest.EnvPort, runtimetest.EnvReply, name)
	path := filepath.Join(n.t.TempDir(), name+".json")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		n.t.Fatal(err)
	}
	n.cli("add", path, name)
}

// proxy starts a client proxy and returns its base URL.
func (n *world) proxy() string {
	n.t.Helper()
	port := freeport.T(n.t)
	p := proctest.Start(n.t, "proxy", n.bins["proxy"], launch.ClientProxy{HTTPPort: port}.Args(), n.env)
	p.WaitOutput(launch.ProxyReady, 30*time.Second)
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type nodeView struct {
	registry.Node
	RTT float64
}

func TestThreeAllocatorsAreListedWithCapacityAndRTT(t *testing.T) {
	n := startNet(t)
	for i := 1; i <= 3; i++ {
		n.allocator(fmt.Sprintf("alloc%d", i), "-cpus", strconv.Itoa(i), "-memory", strconv.Itoa(512*i), "-labels", "rack="+strconv.Itoa(i))
	}
	var nodes []nodeView
	eventually.Succeeds(t, 15*time.Second, func() error {
		n.cliJSON(&nodes, "nodes")
		if len(nodes) != 3 {
			return fmt.Errorf("%d nodes listed", len(nodes))
		}
		return nil
	})
	for _, nv := range nodes {
		rack, _ := strconv.Atoi(nv.Labels["rack"])
		if nv.CPU != rack*1000 || nv.Memory != rack*512 || nv.FreeCPU != nv.CPU || nv.FreeMemory != nv.Memory || nv.RTT <= 0 {
			t.Fatalf("node %+v", nv)
		}
	}
	table := n.cli("nodes")
	for _, want := range []string{"CPU FREE/TOTAL", "3000/3000m", "1024/1024MiB", "rack=2"} {
		if !strings.Contains(table, want) {
			t.Fatalf("nodes table lacks %q:\n%s", want, table)
		}
	}
}

func TestKilledAllocatorsInstancesLiveOnAndAreAdopted(t *testing.T) {
	n := startNet(t)
	alloc := n.allocator("alloc", "-lease-ttl", "3s")
	n.addService("hello")
	base := n.proxy()
	if code, body := get(t, base+"/hello/"); code != 200 || body != "hello from hello" {
		t.Fatalf("first request: %d %s", code, body)
	}
	var before []registry.Instance
	n.cliJSON(&before, "instances", "hello")
	if len(before) != 1 {
		t.Fatalf("instances %+v", before)
	}

	alloc.Kill()
	// The instance keeps serving while its allocator is dead.
	if code, body := get(t, base+"/hello/"); code != 200 || body != "hello from hello" {
		t.Fatalf("request while the allocator is dead: %d %s", code, body)
	}
	alloc.Restart()
	alloc.WaitOutput("1 instances adopted", 30*time.Second)
	var after []registry.Instance
	eventually.Succeeds(t, 10*time.Second, func() error {
		n.cliJSON(&after, "instances", "hello")
		if len(after) != 1 || after[0].State != registry.StateRunning {
			return fmt.Errorf("instances %+v", after)
		}
		return nil
	})
	if after[0].ID != before[0].ID || after[0].PeerID != before[0].PeerID {
		t.Fatalf("instance changed across the restart: %+v -> %+v", before[0], after[0])
	}
	if code, _ := get(t, base+"/hello/"); code != 200 {
		t.Fatalf("after adoption: %d", code)
	}
	// No orphan, no duplicate: exactly one process runs the instance.
	if got := processesWithEnv(t, "PHYSARUM_INSTANCE_ID="+before[0].ID); got != 2 { // proxy + service
		t.Fatalf("%d processes carry the instance's ID, want 2 (its proxy and service)", got)
	}
}

func TestDeadNodeLeavesTheRegistryWithinItsLease(t *testing.T) {
	n := startNet(t)
	alloc := n.allocator("alloc", "-lease-ttl", "3s")
	var nodes []nodeView
	eventually.Succeeds(t, 10*time.Second, func() error {
		n.cliJSON(&nodes, "nodes")
		if len(nodes) != 1 {
			return fmt.Errorf("%d nodes", len(nodes))
		}
		return nil
	})
	alloc.Kill()
	killed := time.Now()
	eventually.Succeeds(t, 10*time.Second, func() error {
		n.cliJSON(&nodes, "nodes")
		if len(nodes) != 0 {
			return fmt.Errorf("%d nodes", len(nodes))
		}
		return nil
	})
	// The lease was renewed at most a third of a TTL before the kill.
	if took := time.Since(killed); took > 3*time.Second+2*time.Second {
		t.Fatalf("dead node listed for %s with a 3s lease", took)
	}
	t.Logf("dead node gone after %s", time.Since(killed).Round(10*time.Millisecond))
}

func TestStoppedAllocatorStopsItsInstances(t *testing.T) {
	n := startNet(t)
	alloc := n.allocator("alloc")
	n.addService("hello")
	out := n.cli("deploy", "hello")
	if !strings.HasPrefix(out, "started hello-") {
		t.Fatalf("deploy: %s", out)
	}
	id := strings.Fields(out)[1]
	if code := alloc.Stop(30 * time.Second); code != 0 {
		t.Fatalf("allocator exited %d on SIGTERM", code)
	}
	if got := processesWithEnv(t, "PHYSARUM_INSTANCE_ID="+id); got != 0 {
		t.Fatalf("%d processes of the instance left after the allocator stopped", got)
	}
}
