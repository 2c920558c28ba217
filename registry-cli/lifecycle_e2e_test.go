package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/registry"
)

// instance reads a launched instance through registry-cli -json.
func (n *cliNet) instance(id string) registry.LaunchedInstance {
	n.t.Helper()
	var li registry.LaunchedInstance
	n.mustJSON(&li, "instance", id)
	return li
}

// running waits until the launched instance runs, its processes with it,
// and returns it and their PIDs.
func (n *cliNet) running(id string, restarts int) (registry.LaunchedInstance, []int) {
	n.t.Helper()
	var li registry.LaunchedInstance
	var pids []int
	eventually.Succeeds(n.t, time.Minute, func() error {
		li = n.instance(id)
		pids = launch.InstancePIDs(id)
		if li.State != registry.StateRunning || li.Want != "running" || li.Restarts != restarts || li.Node == "" ||
			li.Addrs.PeerID == "" || len(li.Addrs.Multiaddrs) == 0 || li.Started.IsZero() || len(pids) == 0 {
			return fmt.Errorf("instance %+v, processes %v", li, pids)
		}
		return nil
	})
	return li, pids
}

// The lifecycle commands against a real registry-service and process
// allocator: launch under a chosen UUID until it runs, stop (its processes
// gone, its record kept), start (running again on its node), reboot (new
// processes, a restart counted), the refusals (an unknown action, a UUID
// in use), and forget.
func TestLaunchActForget(t *testing.T) {
	n := startRegistry(t)
	n.startAllocator("site=a")
	n.addTask("svc")
	const id = "0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"

	// Launch, the UUID given in upper case: kept lower-cased, pending at once.
	out := n.must("launch", "svc", "-uuid", strings.ToUpper(id))
	if strings.TrimSpace(out) != id+": pending (service svc, compute physarum)" {
		t.Fatalf("launch: %q", out)
	}
	li, pids := n.running(id, 0)
	if li.Service != "svc" || li.Compute != registry.ComputePhysarum || li.NodeID == "" {
		t.Fatalf("running instance: %+v", li)
	}
	node := li.Node
	if out := n.must("launched"); !strings.Contains(out, id) || !strings.Contains(out, "running") || !strings.Contains(out, "UUID") {
		t.Fatalf("launched:\n%s", out)
	}
	var ls []registry.LaunchedInstance
	n.mustJSON(&ls, "launched", "svc")
	if len(ls) != 1 || ls[0].UUID != id {
		t.Fatalf("launched -json svc: %+v", ls)
	}
	n.mustJSON(&ls, "launched", "other")
	if len(ls) != 0 {
		t.Fatalf("launched -json other: %+v", ls)
	}
	out = n.must("instance", id)
	for _, want := range []string{"uuid:      " + id, "state:     running", "node:      " + node, "proxy:     " + li.Addrs.PeerID, "addrs:     " + li.Addrs.Multiaddrs[0]} {
		if !strings.Contains(out, want) {
			t.Fatalf("instance: no %q in\n%s", want, out)
		}
	}

	// A UUID in use: refused, nothing changed.
	n.fails(1, "exists", "launch", "svc", "-uuid", id)

	// stop: the record stays, stopped; the processes go.
	out = n.must("act", id, "stop")
	if !strings.HasPrefix(out, id+": stopped (") {
		t.Fatalf("act stop: %q", out)
	}
	eventually.Succeeds(t, 30*time.Second, func() error {
		li := n.instance(id)
		if p := launch.InstancePIDs(id); li.State != registry.StateStopped || li.Want != "stopped" || len(p) != 0 {
			return fmt.Errorf("after stop: instance %+v, processes %v", li, p)
		}
		return nil
	})
	if out := n.must("launched"); !strings.Contains(out, "stopped  stopped") {
		t.Fatalf("launched after stop:\n%s", out)
	}

	// start: running again, on the same node.
	var after registry.LaunchedInstance
	n.mustJSON(&after, "act", id, "start")
	if after.UUID != id || after.Want != "running" {
		t.Fatalf("act start -json: %+v", after)
	}
	li, started := n.running(id, 0)
	if li.Node != node || slices.ContainsFunc(started, func(p int) bool { return slices.Contains(pids, p) }) {
		t.Fatalf("after start: instance %+v on %s (was %s), processes %v (before the stop %v)", li, li.Node, node, started, pids)
	}

	// reboot: new processes on the same node, a restart counted.
	// Its answer shows the instance as its allocator last published it:
	// starting or already running.
	if out := n.must("act", id, "reboot"); !strings.HasPrefix(out, id+": running (") && !strings.HasPrefix(out, id+": starting (") {
		t.Fatalf("act reboot: %q", out)
	}
	li, rebooted := n.running(id, 1)
	if li.Node != node || slices.ContainsFunc(rebooted, func(p int) bool { return slices.Contains(started, p) }) {
		t.Fatalf("after reboot: instance %+v on %s (was %s), processes %v (before %v)", li, li.Node, node, rebooted, started)
	}

	// An unknown action: refused, naming the valid ones.
	n.fails(2, "want start, stop, reboot", "act", id, "explode")
	if li := n.instance(id); li.State != registry.StateRunning || li.Restarts != 1 {
		t.Fatalf("after a refused action: %+v", li)
	}

	// forget: stopped and gone.
	if out := n.must("forget", id); strings.TrimSpace(out) != "forgot instance "+id {
		t.Fatalf("forget: %q", out)
	}
	n.fails(1, "no launched instance "+id, "instance", id)
	n.fails(1, "no launched instance "+id, "act", id, "start")
	eventually.Succeeds(t, 30*time.Second, func() error {
		if p := launch.InstancePIDs(id); len(p) != 0 {
			return fmt.Errorf("processes of a forgotten instance: %v", p)
		}
		return nil
	})
	if out := n.must("launched"); strings.TrimSpace(out) != "no launched instances" {
		t.Fatalf("launched after forget:\n%s", out)
	}
}
