package agent_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// TestAgentWithATakenNameIsRefusedAtStart: a second agent named as a
// live one fails in New with the registry's one clear line, naming the
// holder and -name; the first keeps its record, and the second starts
// under a name of its own. An agent given no name gets one of its peer
// ID.
func TestAgentWithATakenNameIsRefusedAtStart(t *testing.T) {
	w := newWorld(t)
	_, n1 := w.allocator(allocOpts{cfg: agent.Config{Name: "n1"}})
	n2 := w.node(0)
	_, _, err := w.startAgent(n2, filepath.Join(t.TempDir(), "instances"), agent.Config{Name: "n1"})
	want := fmt.Sprintf(`allocator name "n1" is taken by live node %s; give each allocator its own -name`, n1.ID())
	if !errors.Is(err, agent.ErrNameTaken) || wire.CodeOf(err) != wire.CodeConflict || err.Error() != want {
		t.Fatalf("second agent named n1: %v\nwant: %s", err, want)
	}
	second, _, err := w.startAgent(n2, filepath.Join(t.TempDir(), "instances"), agent.Config{Name: "n2"})
	if err != nil {
		t.Fatalf("second agent under a name of its own: %v", err)
	}
	if second.Name() != "n2" {
		t.Fatalf("Name() = %q", second.Name())
	}
	unnamed, n3 := w.allocator(allocOpts{})
	id := n3.ID().String()
	if want := "node-" + strings.ToLower(id[len(id)-10:]); unnamed.Name() != want {
		t.Fatalf("default name %q, want %q", unnamed.Name(), want)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		nodes, err := w.rc.ListNodes(t.Context())
		if err != nil {
			return err
		}
		byName := map[string]string{}
		for _, n := range nodes {
			byName[n.Name] = n.PeerID
		}
		if len(nodes) != 3 || byName["n1"] != n1.ID().String() || byName["n2"] != n2.ID().String() || byName[unnamed.Name()] != id {
			return fmt.Errorf("nodes by name %v", byName)
		}
		return nil
	})
}

// TestDeployWithChosenIDAndComputeIsKeptThroughAdoption: a deploy may
// choose its instance's ID and name the compute it counts towards; both
// are in the answer, the list and the registry record, and an agent that
// adopts the instance after a restart keeps the compute. A chosen ID in
// use is a conflict, an ill-formed one a bad request; an on-demand
// request is never handed the pinned instance.
func TestDeployWithChosenIDAndComputeIsKeptThroughAdoption(t *testing.T) {
	w := newWorld(t)
	n := w.node(0)
	dir := filepath.Join(t.TempDir(), "instances")
	first, firstRT, err := w.startAgent(n, dir, agent.Config{Name: "keeper", KeepInstances: true})
	if err != nil {
		t.Fatal(err)
	}
	w.service("pinned", 10, 0, nil)
	const id = "pinned-site-a-1"
	req := deploy.Request{Op: deploy.OpDeploy, Service: "pinned", ID: id, Compute: "site-a"}
	resp, err := w.send(n, req)
	if err != nil {
		t.Fatal(err)
	}
	if in := resp.Instance; in.ID != id || in.Compute != "site-a" || in.OnDemand || resp.Reused {
		t.Fatalf("deployed %+v (reused %v)", in, resp.Reused)
	}
	listed, err := deploy.List(t.Context(), w.client.Host(), n.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != id || listed[0].Compute != "site-a" {
		t.Fatalf("listed %+v", listed)
	}
	eventually.Succeeds(t, 5*time.Second, func() error {
		if rec, ok := w.record(id); !ok || rec.Compute != "site-a" || rec.State != registry.StateRunning {
			return fmt.Errorf("record %+v (found %v)", rec, ok)
		}
		return nil
	})

	if _, err := w.send(n, req); wire.CodeOf(err) != wire.CodeConflict || !strings.Contains(err.Error(), id) {
		t.Fatalf("a second deploy with ID %s: %v; want a conflict naming it", id, err)
	}
	for _, bad := range []deploy.Request{
		{Op: deploy.OpDeploy, Service: "pinned", ID: "Pinned-2"},
		{Op: deploy.OpDeploy, Service: "pinned", ID: "pinned.2"},
		{Op: deploy.OpDeploy, Service: "pinned", Compute: "Not A Compute"},
		{Op: deploy.OpDeploy, Service: "pinned", Compute: "site-a", OnDemand: true},
	} {
		if _, err := w.send(n, bad); wire.CodeOf(err) != wire.CodeBadRequest {
			t.Errorf("deploy %+v: %v; want bad_request", bad, err)
		}
	}
	onDemand, err := w.deploy(n, "pinned", true)
	if err != nil {
		t.Fatal(err)
	}
	if onDemand.Instance.ID == id || onDemand.Reused || onDemand.Instance.Compute != "" {
		t.Fatalf("an on-demand request got %+v (reused %v); want a new instance of no compute", onDemand.Instance, onDemand.Reused)
	}

	// Restart: the instances keep running, the next agent adopts them.
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
		if len(insts) != 2 || i < 0 || insts[i].Compute != "site-a" || insts[i].State != registry.StateRunning {
			return fmt.Errorf("adopted %+v", insts)
		}
		return nil
	})
	eventually.Succeeds(t, 5*time.Second, func() error {
		if rec, ok := w.record(id); !ok || rec.Compute != "site-a" || rec.State != registry.StateRunning {
			return fmt.Errorf("record after adoption %+v (found %v)", rec, ok)
		}
		return nil
	})
}
