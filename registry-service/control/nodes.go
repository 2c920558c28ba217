package control

import (
	"context"

	"github.com/physarum-p2p/physarum/registry"
)

// ListNodes reads every live allocator's node record, as the allocator
// published it, by peer ID: the HTTP API's GET /nodes
// (registry/httpapi.NodeLister).
func (c *Control) ListNodes(ctx context.Context) ([]registry.Node, error) {
	return c.recs.ListNodes(ctx)
}
