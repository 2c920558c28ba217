package server

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// dispatchLifecycle serves the instance lifecycle (seed 003) on the
// registry protocol: the same Control the HTTP API's /instances serves.
// Launching, acting and forgetting are writes (the -writers allowlist);
// reading is not. Requests are checked here as the client checks them,
// so a malformed one never reaches the store.
func (s *Server) dispatchLifecycle(ctx context.Context, from peer.ID, r registry.Request) (*registry.Response, error) {
	switch r.Op {
	case registry.OpLaunch:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		if r.Launch == nil {
			return nil, wire.Errorf(wire.CodeBadRequest, "launch without Launch")
		}
		if err := registry.ValidateLaunch(r.Launch); err != nil {
			return nil, badRequest(err)
		}
		li, err := s.ctl.Launch(ctx, *r.Launch)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Launched: []registry.LaunchedInstance{li}}, nil
	case registry.OpLaunchedGet:
		li, err := s.ctl.GetLaunched(ctx, r.UUID)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Launched: []registry.LaunchedInstance{li}}, nil
	case registry.OpLaunchedList:
		ls, err := s.ctl.ListLaunched(ctx, r.Name)
		return &registry.Response{Launched: ls}, err
	case registry.OpLaunchedAct:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		if err := registry.ValidateAction(r.Action); err != nil {
			return nil, badRequest(err)
		}
		li, err := s.ctl.Act(ctx, r.UUID, r.Action)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Launched: []registry.LaunchedInstance{li}}, nil
	case registry.OpLaunchedForget:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		msg, err := s.ctl.Forget(ctx, r.UUID)
		return &registry.Response{Message: msg}, err
	}
	return nil, wire.Errorf(wire.CodeBadRequest, "unknown Op %q", r.Op)
}
