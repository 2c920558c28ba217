package control_test

import (
	"slices"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// TestControlVersionsAServiceAndItsInstancesShowTheirs: Control's
// AddService says what a registration did (added, updated to a version,
// unchanged) and records who did it and when; History lists the
// versions newest first; status shows each instance's version; deleting
// the service forgets its versions.
func TestControlVersionsAServiceAndItsInstancesShowTheirs(t *testing.T) {
	r := newRig(t) // "svc" is version 1
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ctx := registry.WithCaller(t.Context(), "peer tester")
	info := registry.ServiceInfo{CpuReq: 200, MemoryReq: 10, Exec: &registry.ExecConf{Command: "x"}}
	for _, want := range []string{"updated service svc, version 2", "service svc unchanged, version 2"} {
		if msg, err := r.ctl.AddService(ctx, "svc", info); err != nil || msg != want {
			t.Fatalf("add: %q, %v; want %q", msg, err, want)
		}
	}
	if msg, err := r.ctl.AddService(ctx, "other", info); err != nil || msg != "added service other, version 1" {
		t.Fatalf("add another: %q, %v", msg, err)
	}
	h, err := r.ctl.History(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].Version != 2 || h[0].Info.CpuReq != 200 || h[0].SetBy != "peer tester" || h[0].SetAt.IsZero() ||
		h[1].Version != 1 || h[1].Info.CpuReq != 100 {
		t.Fatalf("history %+v", h)
	}
	if _, err := r.ctl.History(ctx, "Not A Name"); wire.CodeOf(err) != wire.CodeBadRequest {
		t.Fatalf("history of a bad name: %v, want bad_request", err)
	}

	for i, v := range []int{1, 2} {
		in := registry.Instance{ID: "svc-" + string(rune('a'+i)), Service: "svc", Node: "peer-1", State: registry.StateRunning,
			Runtime: registry.RuntimeProcess, Version: v, Started: at.Add(time.Duration(i) * time.Second)}
		if err := r.store.PutInstance(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.ctl.Status(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	for _, in := range st.Instances {
		versions = append(versions, in.Version)
	}
	slices.Sort(versions)
	if !slices.Equal(versions, []int{1, 2}) {
		t.Fatalf("status instances %+v: want versions 1 and 2", st.Instances)
	}

	if _, err := r.ctl.DeleteService(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.History(ctx, "svc"); wire.CodeOf(err) != wire.CodeNotFound {
		t.Fatalf("history after delete: %v, want not_found", err)
	}
	if h, err := r.ctl.History(ctx, "other"); err != nil || len(h) != 1 {
		t.Fatalf("another service's history after delete: %+v, %v", h, err)
	}
}
