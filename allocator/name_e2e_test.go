package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/proctest"
)

// A second allocator given the name of a live one exits 1 at start with
// one line that names the holder and -name; the first runs on, listed
// under its name, and the second starts under a name of its own.
func TestSecondAllocatorWithATakenNameExits1(t *testing.T) {
	n := startNet(t)
	first := n.allocator("n1")
	if out := first.Stdout(); !strings.Contains(out, launch.AllocatorReady+": name n1,") {
		t.Fatalf("the ready line does not give the name:\n%s", out)
	}
	var nodes []nodeView
	n.cliJSON(&nodes, "nodes")
	if len(nodes) != 1 || nodes[0].Name != "n1" {
		t.Fatalf("nodes %+v; want n1's record", nodes)
	}
	holder := nodes[0].PeerID

	_, stderr, code := proctest.Run(t, n.bins["allocator"], n.allocatorArgs("n1"), n.env, time.Minute)
	lines := launch.LastLines(stderr, 1)
	want := fmt.Sprintf(`allocator: allocator name "n1" is taken by live node %s; give each allocator its own -name`, holder)
	if code != 1 || len(lines) != 1 || lines[0] != want {
		t.Fatalf("second allocator named n1: exit %d, last line %q\nwant exit 1 and %q", code, lines, want)
	}
	if !first.Running() {
		t.Fatal("the first allocator exited")
	}
	n.allocator("n2")
	eventually.Succeeds(t, 10*time.Second, func() error {
		n.cliJSON(&nodes, "nodes")
		if len(nodes) != 2 {
			return fmt.Errorf("%d nodes", len(nodes))
		}
		return nil
	})
}
