package control_test

import (
	"testing"

	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
	"github.com/physarum-p2p/physarum/registry/httpapi"
)

var _ httpapi.NodeLister = (*control.Control)(nil)

// TestControlListsNodesAsPublished: the records come back as their
// allocators published them, RTTs and load included.
func TestControlListsNodesAsPublished(t *testing.T) {
	r := newRig(t)
	nodes, err := r.store.ListNodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := nodes[0]
	n.RTTs = []registry.PeerRTT{{PeerID: nodes[1].PeerID, RTT: 0.4}, {PeerID: nodes[2].PeerID, RTT: 31.5}}
	n.Load = []registry.InstanceLoad{{ID: "svc-1", Service: "svc", RPS: 3}}
	if _, err := r.store.PutNode(t.Context(), n, 30); err != nil {
		t.Fatal(err)
	}
	got, err := r.ctl.ListNodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("listed %d nodes, want 3", len(got))
	}
	for _, g := range got {
		if g.PeerID == n.PeerID && (len(g.RTTs) != 2 || g.RTTs[1] != n.RTTs[1] || len(g.Load) != 1) {
			t.Fatalf("node %s listed as %+v, published %+v", n.Name, g, n)
		}
	}
}
