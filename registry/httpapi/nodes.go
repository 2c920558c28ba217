package httpapi

import (
	"cmp"
	"context"
	"net/http"
	"slices"

	"github.com/physarum-p2p/physarum/registry"
)

// Nodes (SPEC.md section 14, the dashboard's network): GET /nodes answers
// every live allocator's node record, as the allocator published it
// (capacity and use, labels, runtimes, images held, its instances' Load,
// its RTTs to other allocators), sorted by name then peer ID; [] when
// there is none. It is a read: the token when reads need one, none with
// PublicRead. It is served when the Controller is also a NodeLister
// (registry-service's control, and the registry client behind an
// allocator's connector).

// routeNodes is the route key of the node records.
const routeNodes = "/nodes"

// NodeLister lists the live allocators' node records. registry-service's
// control.Control and *registry.Client implement it. ListNodes is safe
// for concurrent use and returns when ctx ends; its errors are
// *wire.Error where the caller can act on them.
type NodeLister interface {
	ListNodes(ctx context.Context) ([]registry.Node, error)
}

var _ NodeLister = (*registry.Client)(nil)

// addNodeRoutes adds /nodes when h's Controller lists nodes.
func (h *handler) addNodeRoutes() {
	nl, ok := h.c.(NodeLister)
	if !ok {
		return
	}
	h.routes[routeNodes] = map[string]handlerFunc{
		http.MethodGet: func(q *request) (int, any, error) { return listNodes(nl, q) },
	}
}

func listNodes(nl NodeLister, q *request) (int, any, error) {
	for k := range q.query {
		return 0, nil, errorf("invalid query: unknown parameter %s: /nodes takes none", quote(k))
	}
	nodes, err := nl.ListNodes(q.ctx)
	if err != nil {
		return 0, nil, err
	}
	if nodes == nil {
		nodes = []registry.Node{}
	}
	slices.SortFunc(nodes, func(x, y registry.Node) int {
		return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.PeerID, y.PeerID))
	})
	return http.StatusOK, nodes, nil
}
