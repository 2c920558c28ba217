package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/allocator/runtimetest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

// startAllocator starts a process-runtime allocator with labels, on the
// registry of n.
func (n *cliNet) startAllocator(labels string) {
	n.t.Helper()
	bin := proctest.Build(n.t, "./allocator", "./proxy")
	proxy := proctest.Build(n.t, "./proxy")
	dir := n.t.TempDir()
	env := []string{"P2P_PSK=" + p2ptest.DefaultPassphrase, nodeflags.EnvBootstraps + "=" + n.boot, nodeflags.EnvFastTiming + "=1"}
	p := proctest.Start(n.t, "allocator", bin, launch.Allocator{
		Node:    launch.Node{KeyFile: filepath.Join(dir, "key")},
		DataDir: filepath.Join(dir, "data"), Runtime: "process", Proxy: proxy, Labels: labels,
		LeaseTTL: 3 * time.Second,
	}.Args(), env)
	p.WaitOutput(launch.AllocatorReady, 30*time.Second)
}

// addTask registers the allocator tests' task, answering HTTP, as service.
func (n *cliNet) addTask(service string) {
	n.t.Helper()
	task := proctest.Build(n.t, "./allocator/runtimetest/testtask")
	cfg := writeFile(n.t, service+".json", fmt.Sprintf(`{"CpuReq":100,"MemoryReq":16,"Exec":{"Command":%q,"Env":{%q:%q,%q:"${SERVICE_PORT}"}}}`,
		task, runtimetest.EnvTask, runtimetest.ModeHTTP, runtimetest.EnvPort))
	n.must("add", cfg, service)
}

// must runs registry-cli and fails the test unless it exits 0.
func (n *cliNet) must(args ...string) string {
	n.t.Helper()
	out, errs, code := n.run(args...)
	if code != 0 {
		n.t.Fatalf("registry-cli %q: exit %d: %s", args, code, errs)
	}
	return out
}

// mustJSON runs registry-cli -json and decodes what it prints into v.
func (n *cliNet) mustJSON(v any, args ...string) {
	n.t.Helper()
	out := n.must(append([]string{"-json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		n.t.Fatalf("registry-cli -json %q: %v\n%s", args, err, out)
	}
}

// fails runs registry-cli, wants it to exit code with one line on stderr
// naming msg.
func (n *cliNet) fails(code int, msg string, args ...string) {
	n.t.Helper()
	_, errs, got := n.run(args...)
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	last := lines[len(lines)-1]
	if got != code || !strings.HasPrefix(last, "registry-cli: ") || !strings.Contains(last, msg) {
		n.t.Fatalf("registry-cli %q: exit %d, want %d; stderr %q: want a line naming %q", args, got, code, errs, msg)
	}
}

// status reads a service's status through registry-cli -json.
func (n *cliNet) status(service string) registry.ServiceStatus {
	n.t.Helper()
	var st registry.ServiceStatus
	n.mustJSON(&st, "status", service)
	return st
}

func computeNamed(cs []registry.ComputeInfo, name string) (registry.ComputeInfo, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return registry.ComputeInfo{}, false
}

// The desired-state commands against a real registry and allocator: a
// compute over the allocator's labels, a service scaled to 2 on it and
// back to 0, status as a table and as JSON all along, and the refusals.
func TestScaleStatusAndComputes(t *testing.T) {
	n := startRegistry(t)
	n.startAllocator("site=a")
	n.addTask("svc")

	// computes: the network always; an operator's compute once added.
	if out := n.must("computes"); !strings.Contains(out, "physarum") || !strings.Contains(out, "network") {
		t.Fatalf("computes:\n%s", out)
	}
	if out := n.must("compute", "add", "site-a", "physarum:labels?site=a"); strings.TrimSpace(out) != "added compute site-a" {
		t.Fatalf("compute add: %q", out)
	}
	var cs []registry.ComputeInfo
	n.mustJSON(&cs, "computes")
	if c, ok := computeNamed(cs, registry.ComputePhysarum); !ok || !c.Builtin || c.Kind != registry.KindNetwork {
		t.Fatalf("computes: physarum is %+v (found %v)", c, ok)
	}
	if c, ok := computeNamed(cs, "site-a"); !ok || c.Builtin || c.Kind != registry.KindLabels || len(c.Nodes) != 1 {
		t.Fatalf("computes: site-a is %+v (found %v); want the one allocator labelled site=a", c, ok)
	}

	// scale, with its option after its arguments, as the issue writes it.
	if out := n.must("scale", "svc", "2", "-compute", "site-a"); strings.TrimSpace(out) != "svc: desired 2 on site-a (was 0)" {
		t.Fatalf("scale: %q", out)
	}
	eventually.Succeeds(t, time.Minute, func() error {
		st := n.status("svc")
		if st.RunningResources != 2 || st.Desired != 2 || st.Computes["site-a"].Running != 2 {
			return fmt.Errorf("status: %+v", st)
		}
		return nil
	})
	out := n.must("status", "svc")
	for _, want := range []string{"svc: 2/2 running (desired 2), 0 starting, 0 failed, 0 on demand", "COMPUTE", "site-a   2", "ID", "running"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status svc: no %q in\n%s", want, out)
		}
	}
	if got := strings.Count(out, "site-a"); got != 3 { // the compute's row and two instances
		t.Errorf("status svc: site-a appears %d times, want 3:\n%s", got, out)
	}
	if out := n.must("status"); !strings.Contains(out, "svc: 2/2 running (desired 2)") {
		t.Fatalf("status:\n%s", out)
	}
	var all []registry.ServiceStatus
	n.mustJSON(&all, "status")
	if len(all) != 1 || all[0].Service != "svc" || all[0].RunningResources != 2 {
		t.Fatalf("status -json: %+v", all)
	}
	var d registry.Desired
	n.mustJSON(&d, "scale", "-compute", "site-a", "svc", "2")
	if d.Service != "svc" || d.Compute != "site-a" || d.Number != 2 || d.SetBy == "" || d.SetAt.IsZero() {
		t.Fatalf("scale -json: %+v", d)
	}

	// What the registry refuses: one line, exit 1, nothing changed.
	n.fails(1, "scale it to 0 first", "compute", "delete", "site-a")
	n.fails(1, `no service named "nosuch"`, "scale", "nosuch", "1")
	n.fails(1, `no compute named "nope"`, "scale", "svc", "1", "-compute", "nope")
	n.fails(1, "-max-scale", "scale", "svc", "1000000")
	n.fails(1, `no service named "nosuch"`, "status", "nosuch")
	n.fails(1, "built in", "compute", "delete", registry.ComputePhysarum)
	n.fails(1, "built in", "compute", "add", registry.ComputePhysarum, "physarum:labels?site=b")
	n.fails(2, "non-negative integer", "scale", "svc", "-2")
	if st := n.status("svc"); st.Desired != 2 {
		t.Fatalf("refused commands changed the desired count: %+v", st)
	}

	// Back to 0: every pinned instance stops; then the compute can go.
	if out := n.must("scale", "svc", "0", "-compute", "site-a"); strings.TrimSpace(out) != "svc: desired 0 on site-a (was 2)" {
		t.Fatalf("scale to 0: %q", out)
	}
	eventually.Succeeds(t, time.Minute, func() error {
		if st := n.status("svc"); st.RunningResources != 0 || len(st.Instances) != 0 {
			return fmt.Errorf("status after scale 0: %+v", st)
		}
		return nil
	})
	if out := n.must("compute", "delete", "site-a"); strings.TrimSpace(out) != "deleted compute site-a" {
		t.Fatalf("compute delete: %q", out)
	}
	n.mustJSON(&cs, "computes")
	if _, ok := computeNamed(cs, "site-a"); ok {
		t.Fatalf("site-a still listed after its delete: %+v", cs)
	}
}
