package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// handle serves the deploy protocol.
func (a *Agent) handle(ctx context.Context, req wire.Request) (any, error) {
	var r deploy.Request
	if err := req.Decode(&r); err != nil {
		a.metrics.refused("bad_request")
		return nil, err
	}
	switch r.Op {
	case deploy.OpDeploy:
		a.metrics.requested()
		resp, err := a.deploy(ctx, r)
		if err != nil {
			a.log.Info("deploy refused", "service", r.Service, "peer", req.Peer, "err", err)
		}
		return resp, err
	case deploy.OpStop:
		return &deploy.Response{}, a.stopByID(ctx, r.ID)
	case deploy.OpList:
		return &deploy.Response{Instances: a.Instances()}, nil
	}
	a.metrics.refused("bad_request")
	return nil, wire.Errorf(wire.CodeBadRequest, "unknown Op %q (want deploy, stop or list)", r.Op)
}

// deploy admits and starts an instance of a registered service, or hands
// back an on-demand one already running or starting here, and waits until
// it runs.
func (a *Agent) deploy(ctx context.Context, r deploy.Request) (*deploy.Response, error) {
	if err := validateDeploy(r); err != nil {
		a.metrics.refused("bad_request")
		return nil, &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}
	}
	info, err := a.reg.GetService(ctx, r.Service)
	if errors.Is(err, registry.ErrNotFound) {
		a.metrics.refused("unknown_service")
		return nil, wire.Errorf(wire.CodeNotFound, "unknown service %q: register it with registry-cli add", r.Service)
	}
	if err != nil {
		a.metrics.refused("registry_unavailable")
		return nil, wire.Errorf(wire.CodeUnavailable, "read service %s: %v", r.Service, err)
	}
	if r.Version != 0 && r.Version != info.Version {
		if info, err = a.serviceVersion(ctx, r.Service, r.Version); err != nil {
			return nil, err
		}
	}
	rtName, err := a.pickRuntime(&info)
	if err != nil {
		a.metrics.refused("no_runtime")
		return nil, err
	}
	in, reused, err := a.reuseOrStart(r, &info, rtName)
	if err != nil {
		return nil, err
	}
	select {
	case <-in.ready:
	case <-ctx.Done():
		return nil, wire.Errorf(wire.CodeTimeout, "instance %s not running before the request's deadline", in.rec.ID)
	}
	rec := in.record()
	if rec.State != registry.StateRunning {
		return nil, wire.Errorf(wire.CodeRuntimeError, "instance %s of %s %s: %s", rec.ID, r.Service, rec.State, rec.Message)
	}
	return &deploy.Response{Instance: &rec, Reused: reused}, nil
}

// serviceVersion reads version v of service's definition from the
// versions the registry keeps.
func (a *Agent) serviceVersion(ctx context.Context, service string, v int) (registry.ServiceInfo, error) {
	vs, err := a.reg.History(ctx, service)
	if err != nil {
		a.metrics.refused("registry_unavailable")
		return registry.ServiceInfo{}, wire.Errorf(wire.CodeUnavailable, "read the versions of %s: %v", service, err)
	}
	for _, sv := range vs {
		if sv.Version == v {
			info := sv.Info
			info.Version = v
			return info, nil
		}
	}
	a.metrics.refused("unknown_version")
	return registry.ServiceInfo{}, wire.Errorf(wire.CodeNotFound, "version %d of %s is not among the %d the registry keeps", v, service, len(vs))
}

// validateDeploy checks what a deploy request names: the service, and the
// instance ID and compute when it chooses them.
func validateDeploy(r deploy.Request) error {
	if err := registry.ValidateName(r.Service); err != nil {
		return err
	}
	if r.Version < 0 {
		return fmt.Errorf("version %d: want 0 (the current one) or more", r.Version)
	}
	if r.ID != "" {
		if err := validateID(r.ID); err != nil {
			return err
		}
	}
	if r.Compute != "" {
		if r.OnDemand {
			return errors.New("an on-demand instance counts towards no compute: give OnDemand or Compute, not both")
		}
		if err := registry.ValidateComputeName(r.Compute); err != nil {
			return err
		}
	}
	return nil
}

// reuseOrStart hands back a shared on-demand instance or starts a new one;
// for on-demand requests the two are one step, or concurrent requests
// would both find none and both start one. A request that chooses the
// instance's ID asks for that instance: it is never handed another.
func (a *Agent) reuseOrStart(r deploy.Request, info *registry.ServiceInfo, rtName string) (*instance, bool, error) {
	if r.OnDemand && r.ID == "" {
		a.onDemandMu.Lock()
		defer a.onDemandMu.Unlock()
		if in, ok := a.reuse(r.Service, info.Version); ok {
			return in, true, nil
		}
	}
	in, err := a.start(startReq{id: r.ID, service: r.Service, compute: r.Compute, onDemand: r.OnDemand}, info, rtName)
	return in, false, err
}

// reuse finds an on-demand instance of version v of the service that is
// running or on its way, so that requests arriving together share one.
// One of another version is not handed out: during a blue-green rollout
// proxies send nothing to the set that is not serving.
func (a *Agent) reuse(service string, v int) (*instance, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, in := range a.instances {
		if !in.rec.OnDemand || in.rec.Service != service || in.rec.Version != v {
			continue
		}
		switch in.state() {
		case registry.StatePending, registry.StateStarting, registry.StateRunning:
			return in, true
		}
	}
	return nil, false
}

// pickRuntime chooses the first runtime the service can run under that
// this node offers now.
func (a *Agent) pickRuntime(info *registry.ServiceInfo) (string, error) {
	have := a.Runtimes()
	for _, want := range info.Runtimes() {
		for _, h := range have {
			if h == want {
				return h, nil
			}
		}
	}
	return "", wire.Errorf(wire.CodeUnsupported, "this node cannot run the service: it needs %s, the node offers %s",
		strings.Join(info.Runtimes(), " or "), strings.Join(have, ", "))
}

func (a *Agent) stopByID(ctx context.Context, id string) error {
	a.mu.Lock()
	in := a.instances[id]
	a.mu.Unlock()
	if in == nil {
		return wire.Errorf(wire.CodeNotFound, "no instance %q on this node", id)
	}
	a.stop(ctx, in, "stop requested")
	return nil
}
