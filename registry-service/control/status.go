package control

import (
	"context"
	"sort"

	"github.com/physarum-p2p/physarum/registry"
)

// Status reports one service: desired and actual counts per compute, what
// the reconciler learnt (failures, backoff), and every instance.
func (c *Control) Status(ctx context.Context, service string) (registry.ServiceStatus, error) {
	if err := registry.ValidateName(service); err != nil {
		return registry.ServiceStatus{}, badRequest(err)
	}
	if _, err := c.recs.GetService(ctx, service); err != nil {
		return registry.ServiceStatus{}, err
	}
	all, err := c.statuses(ctx, service)
	if err != nil {
		return registry.ServiceStatus{}, err
	}
	return all[service], nil
}

// StatusAll reports every service, by name.
func (c *Control) StatusAll(ctx context.Context) ([]registry.ServiceStatus, error) {
	svcs, err := c.recs.ListServices(ctx)
	if err != nil {
		return nil, err
	}
	all, err := c.statuses(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]registry.ServiceStatus, 0, len(svcs))
	for name := range svcs {
		st, ok := all[name]
		if !ok {
			st = emptyStatus(name)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out, nil
}

func emptyStatus(service string) registry.ServiceStatus {
	return registry.ServiceStatus{Service: service, Computes: map[string]registry.ComputeStatus{}, Instances: []registry.InstanceStatus{}}
}

// statuses reads what status needs ("" service: every service) and
// builds one ServiceStatus per service seen.
func (c *Control) statuses(ctx context.Context, service string) (map[string]registry.ServiceStatus, error) {
	desired, err := listDesired(ctx, c.cli, service)
	if err != nil {
		return nil, err
	}
	states, err := listStates(ctx, c.cli, service)
	if err != nil {
		return nil, err
	}
	insts, _, err := c.recs.ListInstances(ctx, service)
	if err != nil {
		return nil, err
	}
	nodes, err := c.recs.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	auto, err := c.autoscaleStates(ctx, service)
	if err != nil {
		return nil, err
	}
	rollouts, err := listRollouts(ctx, c.cli)
	if err != nil {
		return nil, err
	}
	out := buildStatuses(desired, states, insts, nodes)
	if service != "" {
		if _, ok := out[service]; !ok {
			out[service] = emptyStatus(service)
		}
	}
	for svc, ro := range rollouts {
		if st, ok := out[svc]; ok {
			st.Rollout = &ro.Rollout
			if rt := ro.Route(); rt.Version != 0 {
				st.Route = &rt
				for i, in := range st.Instances {
					st.Instances[i].Standby = !rt.Serves(in.Version)
				}
			}
			out[svc] = st
		}
	}
	for svc, a := range auto {
		st, ok := out[svc]
		if !ok {
			st = emptyStatus(svc)
		}
		st.Autoscale = &a
		out[svc] = st
	}
	return out, nil
}

// buildStatuses is status's arithmetic, apart from its reads.
func buildStatuses(desired map[pair]registry.Desired, states map[pair]keyState, insts []registry.Instance, nodes []registry.Node) map[string]registry.ServiceStatus {
	names := map[string]string{}
	for _, n := range nodes {
		names[n.PeerID] = n.Name
	}
	out := map[string]registry.ServiceStatus{}
	get := func(svc string) registry.ServiceStatus {
		st, ok := out[svc]
		if !ok {
			st = emptyStatus(svc)
		}
		return st
	}
	for p, d := range desired {
		st := get(p.service)
		cs := st.Computes[p.compute]
		cs.Desired, cs.SetBy, cs.SetAt = d.Number, d.SetBy, d.SetAt
		st.Computes[p.compute] = cs
		st.Desired += d.Number
		out[p.service] = st
	}
	for _, in := range insts {
		st := get(in.Service)
		st.Instances = append(st.Instances, registry.InstanceStatus{
			ID: in.ID, Node: in.Node, NodeName: names[in.Node], Compute: in.Compute, State: in.State,
			OnDemand: in.OnDemand, Started: in.Started, Restarts: in.Restarts, Message: in.Message,
			Version: in.Version,
		})
		switch {
		case in.OnDemand:
			if in.State == registry.StateRunning {
				st.OnDemand++
			}
		case in.Compute != "":
			cs := st.Computes[in.Compute]
			switch in.State {
			case registry.StateRunning:
				cs.Running++
				st.RunningResources++
			case registry.StatePending, registry.StateStarting:
				cs.Starting++
				st.Starting++
			case registry.StateFailed:
				cs.Failed++
				st.Failed++
			}
			st.Computes[in.Compute] = cs
		}
		out[in.Service] = st
	}
	for p, ks := range states {
		st, ok := out[p.service]
		if !ok {
			continue // nothing desired and nothing running: a leftover
		}
		cs, ok := st.Computes[p.compute]
		if !ok {
			continue
		}
		cs.LastFailure, cs.BackoffUntil, cs.Message = ks.LastFailure, ks.BackoffUntil, ks.Message
		if ks.ConnectorRunning > cs.Running {
			// An external connector's instances are its own: what it
			// reported is all Physarum knows of them.
			st.RunningResources += ks.ConnectorRunning - cs.Running
			cs.Running = ks.ConnectorRunning
		}
		st.Computes[p.compute] = cs
		out[p.service] = st
	}
	for svc, st := range out {
		registry.SortInstances(st.Instances)
		out[svc] = st
	}
	return out
}
