package control

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control/autoscale"
)

// PrefixAutoscale holds, per service, its policy at <prefix><service>/policy
// and the autoscaler's memory (last decision, history) at
// <prefix><service>/decision. Both are events of topic autoscale.
const PrefixAutoscale = "/physarum/autoscale/"

func autoscalePolicyKey(service string) string   { return PrefixAutoscale + service + "/policy" }
func autoscaleDecisionKey(service string) string { return PrefixAutoscale + service + "/decision" }

// storedPolicy is a policy as kept in etcd.
type storedPolicy struct {
	Policy registry.AutoscalePolicy `json:"policy"`
	SetBy  string                   `json:"set_by"`
	SetAt  time.Time                `json:"set_at"`
}

// storedDecision is what the autoscaler remembers of a service between
// evaluations, and under a new leader.
type storedDecision struct {
	Last    registry.AutoscaleDecision `json:"last"`
	History autoscale.History          `json:"history"`
}

var _ registry.Autoscalers = (*Control)(nil)

// SetAutoscale turns autoscaling on for service, or changes its policy.
// The history of an existing policy is kept (it holds counts, not metric
// values); the compute must exist.
func (c *Control) SetAutoscale(ctx context.Context, service string, p registry.AutoscalePolicy) (registry.AutoscaleState, error) {
	if err := registry.ValidateName(service); err != nil {
		return registry.AutoscaleState{}, badRequest(err)
	}
	if err := p.Validate(); err != nil {
		return registry.AutoscaleState{}, badRequest(err)
	}
	if p.Max > c.cfg.MaxScale {
		return registry.AutoscaleState{}, wire.Errorf(wire.CodeBadRequest, "invalid max: %d: above registry-service's -max-scale %d", p.Max, c.cfg.MaxScale)
	}
	p = p.WithDefaults()
	if p.Compute == "" {
		p.Compute = registry.ComputePhysarum
	}
	if _, err := c.recs.GetService(ctx, service); err != nil {
		return registry.AutoscaleState{}, err
	}
	if err := c.computeExists(ctx, p.Compute); err != nil {
		return registry.AutoscaleState{}, err
	}
	st := storedPolicy{Policy: p, SetBy: registry.CallerOf(ctx), SetAt: c.cfg.Now().UTC()}
	if err := putJSON(ctx, c.cli, autoscalePolicyKey(service), st); err != nil {
		return registry.AutoscaleState{}, err
	}
	c.log.Info("autoscaling policy set", "service", service, "min", p.Min, "max", p.Max, "compute", p.Compute, "by", st.SetBy)
	return c.GetAutoscale(ctx, service)
}

// GetAutoscale reads service's policy and last decision.
func (c *Control) GetAutoscale(ctx context.Context, service string) (registry.AutoscaleState, error) {
	if err := registry.ValidateName(service); err != nil {
		return registry.AutoscaleState{}, badRequest(err)
	}
	all, err := c.autoscaleStates(ctx, service)
	if err != nil {
		return registry.AutoscaleState{}, err
	}
	st, ok := all[service]
	if !ok {
		return registry.AutoscaleState{}, notFound("service %q has no autoscaling policy", service)
	}
	return st, nil
}

// DeleteAutoscale turns autoscaling off; the desired count stays.
func (c *Control) DeleteAutoscale(ctx context.Context, service string) (string, error) {
	if err := registry.ValidateName(service); err != nil {
		return "", badRequest(err)
	}
	resp, err := c.cli.Delete(ctx, PrefixAutoscale+service+"/", clientv3.WithPrefix())
	if err != nil {
		return "", unavailable("delete autoscaling policy", err)
	}
	if resp.Deleted == 0 {
		return "", notFound("service %q has no autoscaling policy", service)
	}
	c.log.Info("autoscaling off", "service", service, "by", registry.CallerOf(ctx))
	return "autoscaling off for " + service + "; its desired count stays as it is", nil
}

// autoscaleStates reads the policies and last decisions of service ("":
// every service), by service.
func (c *Control) autoscaleStates(ctx context.Context, service string) (map[string]registry.AutoscaleState, error) {
	prefix := PrefixAutoscale
	if service != "" {
		prefix += service + "/"
	}
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("read autoscaling policies", err)
	}
	out := map[string]registry.AutoscaleState{}
	decisions := map[string]registry.AutoscaleDecision{}
	for _, kv := range resp.Kvs {
		svc, what, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), PrefixAutoscale), "/")
		if !ok {
			continue
		}
		switch what {
		case "policy":
			var sp storedPolicy
			if json.Unmarshal(kv.Value, &sp) == nil {
				out[svc] = registry.AutoscaleState{Service: svc, Policy: sp.Policy, SetBy: sp.SetBy, SetAt: sp.SetAt}
			}
		case "decision":
			var sd storedDecision
			if json.Unmarshal(kv.Value, &sd) == nil {
				decisions[svc] = sd.Last
			}
		}
	}
	for svc, d := range decisions {
		if st, ok := out[svc]; ok {
			st.Last = &d
			out[svc] = st
		}
	}
	return out, nil
}
