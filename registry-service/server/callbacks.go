package server

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// dispatchCallbacks serves the callback operations on the registry
// protocol over the same Control as the HTTP API. Adding and deleting are
// writes (the -writers allowlist); reads never show a secret.
func (s *Server) dispatchCallbacks(ctx context.Context, from peer.ID, r registry.Request) (*registry.Response, error) {
	switch r.Op {
	case registry.OpCallbackAdd:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		if r.Callback == nil {
			return nil, wire.Errorf(wire.CodeBadRequest, "callback.add without Callback")
		}
		cb, err := s.ctl.AddCallback(ctx, *r.Callback)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Callbacks: []registry.Callback{cb}}, nil
	case registry.OpCallbackList:
		cbs, err := s.ctl.ListCallbacks(ctx)
		return &registry.Response{Callbacks: cbs}, err
	case registry.OpCallbackGet:
		cb, err := s.ctl.GetCallback(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Callbacks: []registry.Callback{cb}}, nil
	case registry.OpCallbackDelete:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		msg, err := s.ctl.DeleteCallback(ctx, r.ID)
		return &registry.Response{Message: msg}, err
	}
	return nil, wire.Errorf(wire.CodeBadRequest, "unknown Op %q", r.Op)
}

// callbackOps are the callback operations, for the request metrics.
var callbackOps = map[string]bool{
	registry.OpCallbackAdd: true, registry.OpCallbackList: true,
	registry.OpCallbackGet: true, registry.OpCallbackDelete: true,
}
