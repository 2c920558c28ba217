package server

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// dispatchControl serves the desired-state operations on the registry
// protocol: the same Control the HTTP API serves, behind this door's own
// check of who may write (the -writers allowlist).
func (s *Server) dispatchControl(ctx context.Context, from peer.ID, r registry.Request) (*registry.Response, error) {
	switch r.Op {
	case registry.OpScale:
		if r.Number == nil {
			return nil, wire.Errorf(wire.CodeBadRequest, "scale without Number")
		}
		if err := s.mayScale(ctx, from, r.ComputeName); err != nil {
			return nil, err
		}
		d, err := s.ctl.Scale(ctx, r.Name, r.ComputeName, *r.Number)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Desired: &d}, nil
	case registry.OpStatus:
		if r.Name == "" {
			all, err := s.ctl.StatusAll(ctx)
			return &registry.Response{Statuses: all}, err
		}
		st, err := s.ctl.Status(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Statuses: []registry.ServiceStatus{st}}, nil
	case registry.OpComputeList:
		cs, err := s.ctl.ListComputes(ctx)
		return &registry.Response{Computes: cs}, err
	case registry.OpComputeGet:
		ci, err := s.ctl.GetCompute(ctx, r.ComputeName)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Computes: []registry.ComputeInfo{ci}}, nil
	case registry.OpComputePut:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		if r.Compute == nil {
			return nil, wire.Errorf(wire.CodeBadRequest, "compute.put without Compute")
		}
		msg, err := s.ctl.PutCompute(ctx, *r.Compute)
		return &registry.Response{Message: msg}, err
	case registry.OpComputeDelete:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		msg, err := s.ctl.DeleteCompute(ctx, r.ComputeName)
		return &registry.Response{Message: msg}, err
	case registry.OpUpdate:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		if r.Info == nil {
			return nil, wire.Errorf(wire.CodeBadRequest, "service.update without Info")
		}
		var st registry.Strategy
		if r.Strategy != nil {
			st = *r.Strategy
		}
		ro, err := s.ctl.Update(ctx, r.Name, *r.Info, st)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Rollouts: []registry.Rollout{ro}}, nil
	case registry.OpRolloutList:
		ros, err := s.ctl.Rollouts(ctx, r.Name)
		return &registry.Response{Rollouts: ros}, err
	case registry.OpPromote, registry.OpRollback:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		act := s.ctl.Promote
		if r.Op == registry.OpRollback {
			act = s.ctl.Rollback
		}
		ro, err := act(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Rollouts: []registry.Rollout{ro}}, nil
	case registry.OpAutoscaleSet:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		if r.Autoscale == nil {
			return nil, wire.Errorf(wire.CodeBadRequest, "autoscale.set without Autoscale")
		}
		st, err := s.ctl.SetAutoscale(ctx, r.Name, *r.Autoscale)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Autoscale: &st}, nil
	case registry.OpAutoscaleGet:
		st, err := s.ctl.GetAutoscale(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Autoscale: &st}, nil
	case registry.OpServiceHistory:
		vs, err := s.ctl.History(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Versions: vs}, nil
	case registry.OpAutoscaleDelete:
		if err := s.mayWrite(from); err != nil {
			return nil, err
		}
		msg, err := s.ctl.DeleteAutoscale(ctx, r.Name)
		return &registry.Response{Message: msg}, err
	}
	return nil, wire.Errorf(wire.CodeBadRequest, "unknown Op %q", r.Op)
}

// mayScale lets writers scale anything, and an allocator scale the
// compute of its own node (its connector door, driven by a Genisys).
func (s *Server) mayScale(ctx context.Context, from peer.ID, compute string) error {
	err := s.mayWrite(from)
	if err == nil || compute == "" {
		return err
	}
	nodes, lerr := s.store.ListNodes(ctx)
	if lerr != nil {
		return lerr
	}
	for _, n := range nodes {
		if n.Name == compute && n.PeerID == from.String() {
			return nil
		}
	}
	return err
}
