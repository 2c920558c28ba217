package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/registry"
)

// Versions through registry-cli, against a real registry: add says which
// version a registration made (or that nothing changed), get shows the
// current version, history lists the versions newest first (as a table
// and as JSON), and delete forgets them.
func TestVersionsGetAndHistory(t *testing.T) {
	n := startRegistry(t)
	v1 := writeFile(t, "v1.json", goodConfig)
	v2 := writeFile(t, "v2.json", strings.Replace(goodConfig, `"CpuReq":100`, `"CpuReq":200`, 1))
	for _, step := range []struct{ cfg, want string }{
		{v1, "added service hello, version 1"},
		{v1, "service hello unchanged, version 1"},
		{v2, "updated service hello, version 2"},
		{v2, "service hello unchanged, version 2"},
	} {
		if out := n.must("add", step.cfg, "hello"); strings.TrimSpace(out) != step.want {
			t.Fatalf("add: %q, want %q", out, step.want)
		}
	}
	if out := n.must("get", "hello"); !strings.Contains(out, `"Version": 2`) {
		t.Fatalf("get: no version 2 in\n%s", out)
	}
	var info registry.ServiceInfo
	n.mustJSON(&info, "get", "hello")
	if info.Version != 2 || info.CpuReq != 200 {
		t.Fatalf("get -json: %+v", info)
	}

	out := n.must("history", "hello")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "VERSION") || !strings.HasPrefix(lines[1], "2 (current)") ||
		!strings.Contains(lines[1], "200m") || !strings.HasPrefix(lines[2], "1 ") || !strings.Contains(lines[2], "100m") ||
		!strings.Contains(lines[1], "/bin/hello -port ${SERVICE_PORT}") || !strings.Contains(lines[1], "peer 12D3KooW") {
		t.Fatalf("history:\n%s", out)
	}
	var vs []registry.ServiceVersion
	n.mustJSON(&vs, "history", "hello")
	if len(vs) != 2 || vs[0].Version != 2 || vs[0].Info.CpuReq != 200 || vs[1].Version != 1 || vs[1].Info.CpuReq != 100 ||
		!strings.HasPrefix(vs[0].SetBy, "peer ") || vs[0].SetAt.IsZero() {
		t.Fatalf("history -json: %+v", vs)
	}

	n.fails(1, `no service named "nope"`, "history", "nope")
	n.fails(2, "want 1 argument", "history")
	n.fails(1, "service name", "history", "Not A Name")
	n.must("delete", "hello")
	n.fails(1, `no service named "hello"`, "history", "hello")
	if out := n.must("add", v2, "hello"); strings.TrimSpace(out) != "added service hello, version 1" {
		t.Fatalf("add after delete: %q, want a new service at version 1", out)
	}
}

// An instance started by a real allocator carries the version of the
// definition it was started from, in instances (table and JSON) and
// status.
func TestInstancesShowTheirVersion(t *testing.T) {
	n := startRegistry(t)
	n.startAllocator("")
	n.addTask("svc")
	n.addTask("svc") // the same definition: still version 1
	var info registry.ServiceInfo
	n.mustJSON(&info, "get", "svc")
	changed := *info.Exec
	changed.Env = map[string]string{"EXTRA": "2"}
	for k, v := range info.Exec.Env {
		changed.Env[k] = v
	}
	info.Exec = &changed
	cfg := writeFile(t, "svc2.json", fmt.Sprintf(`{"CpuReq":100,"MemoryReq":16,"Exec":%s}`, mustMarshal(t, info.Exec)))
	if out := n.must("add", cfg, "svc"); strings.TrimSpace(out) != "updated service svc, version 2" {
		t.Fatalf("add a changed definition: %q", out)
	}
	n.must("scale", "svc", "1")
	eventually.Succeeds(t, time.Minute, func() error {
		st := n.status("svc")
		if st.RunningResources != 1 || len(st.Instances) != 1 || st.Instances[0].Version != 2 {
			return fmt.Errorf("status: %+v", st)
		}
		return nil
	})
	var insts []registry.Instance
	n.mustJSON(&insts, "instances", "svc")
	if len(insts) != 1 || insts[0].Version != 2 {
		t.Fatalf("instances -json: %+v", insts)
	}
	out := n.must("instances", "svc")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "VERSION") || strings.Fields(lines[1])[2] != "2" {
		t.Fatalf("instances: want version 2 in the VERSION column:\n%s", out)
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
