package agent_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/registry"
)

// TestInstanceCarriesTheVersionItWasStartedFrom: an instance's record
// (the deploy's answer, the allocator's list, the registry's record) has
// the version of the definition it was started from. The definition
// moving on changes no running instance's version, an agent that adopts
// the instance after a restart keeps it, and a new instance has the new
// one.
func TestInstanceCarriesTheVersionItWasStartedFrom(t *testing.T) {
	w := newWorld(t)
	n := w.node(0)
	dir := filepath.Join(t.TempDir(), "instances")
	first, firstRT, err := w.startAgent(n, dir, agent.Config{Name: "keeper", KeepInstances: true})
	if err != nil {
		t.Fatal(err)
	}
	w.service("versioned", 10, 0, nil)
	w.service("versioned", 20, 0, nil) // version 2
	resp, err := w.deploy(n, "versioned", false)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Instance.ID
	if resp.Instance.Version != 2 {
		t.Fatalf("deployed %+v: want version 2", resp.Instance)
	}
	wantRecord := func(id string, version int) {
		t.Helper()
		eventually.Succeeds(t, 5*time.Second, func() error {
			if rec, ok := w.record(id); !ok || rec.Version != version || rec.State != registry.StateRunning {
				return fmt.Errorf("record %+v (found %v), want version %d", rec, ok, version)
			}
			return nil
		})
	}
	wantRecord(id, 2)

	w.service("versioned", 30, 0, nil) // version 3
	first.Close()
	if err := firstRT.Close(); err != nil {
		t.Fatal(err)
	}
	second, _, err := w.startAgent(n, dir, agent.Config{Name: "keeper"})
	if err != nil {
		t.Fatal(err)
	}
	eventually.Succeeds(t, 20*time.Second, func() error {
		insts := second.Instances()
		i := slices.IndexFunc(insts, func(in registry.Instance) bool { return in.ID == id })
		if i < 0 || insts[i].Version != 2 || insts[i].State != registry.StateRunning {
			return fmt.Errorf("adopted %+v, want %s at version 2", insts, id)
		}
		return nil
	})
	wantRecord(id, 2)

	resp, err = w.deploy(n, "versioned", false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Instance.ID == id || resp.Instance.Version != 3 {
		t.Fatalf("deployed after the change %+v: want a new instance at version 3", resp.Instance)
	}
	wantRecord(resp.Instance.ID, 3)
}
