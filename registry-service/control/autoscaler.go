package control

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control/autoscale"
)

// autoscaleTick is how often the leader looks for policies due for an
// evaluation: the finest evaluation interval it honours.
const autoscaleTick = 250 * time.Millisecond

// autoscaleCaller is who the desired counts the autoscaler sets are set by.
const autoscaleCaller = "autoscaler"

// autoscaleLoop evaluates each service's autoscaling policy every
// evaluation interval while this registry-service leads: it measures the
// service's load (from the nodes' records, or a Prometheus query), has
// autoscale.Decide choose a count, sets it as the desired count of the
// policy's compute, and keeps the decision (an event) and the history in
// etcd, so that a new leader carries on.
func (r *Reconciler) autoscaleLoop(ctx context.Context) {
	prom := autoscale.PromQuerier{URL: r.cfg.PrometheusURL}
	due := map[string]time.Time{}
	tick := time.NewTicker(autoscaleTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.autoscaleRound(ctx, due, prom, r.cfg.Now())
	}
}

// autoscaleRound evaluates the policies due at now; due holds when each
// service's next evaluation is.
func (r *Reconciler) autoscaleRound(ctx context.Context, due map[string]time.Time, prom autoscale.PromQuerier, now time.Time) {
	policies, err := r.readPolicies(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("autoscaler: cannot read the policies", "err", err)
		}
		return
	}
	for svc := range due {
		if _, ok := policies[svc]; !ok {
			delete(due, svc) // turned off: a new policy starts afresh
		}
	}
	var nodes []registry.Node
	for svc, sp := range policies {
		if at, ok := due[svc]; ok && now.Before(at) {
			continue
		}
		due[svc] = now.Add(time.Duration(sp.policy.WithDefaults().EvaluationInterval))
		if nodes == nil {
			if nodes, err = r.ctl.recs.ListNodes(ctx); err != nil {
				r.log.Warn("autoscaler: cannot read the nodes' load", "err", err)
				return
			}
		}
		r.evaluate(ctx, svc, sp, nodes, prom, now)
	}
}

// policyAndMemory is one service's policy and what the autoscaler kept.
type policyAndMemory struct {
	policy registry.AutoscalePolicy
	memory storedDecision
	stored bool // memory was read from etcd
}

// readPolicies reads every policy with its stored decision and history.
func (r *Reconciler) readPolicies(ctx context.Context) (map[string]policyAndMemory, error) {
	resp, err := r.cli.Get(ctx, PrefixAutoscale, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("read autoscaling policies", err)
	}
	out := map[string]policyAndMemory{}
	memories := map[string]storedDecision{}
	for _, kv := range resp.Kvs {
		svc, what, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), PrefixAutoscale), "/")
		switch what {
		case "policy":
			var sp storedPolicy
			if json.Unmarshal(kv.Value, &sp) == nil {
				out[svc] = policyAndMemory{policy: sp.Policy}
			}
		case "decision":
			var sd storedDecision
			if json.Unmarshal(kv.Value, &sd) == nil {
				memories[svc] = sd
			}
		}
	}
	for svc, m := range memories {
		if p, ok := out[svc]; ok {
			p.memory, p.stored = m, true
			out[svc] = p
		}
	}
	return out, nil
}

// evaluate makes one evaluation of svc's policy.
func (r *Reconciler) evaluate(ctx context.Context, svc string, sp policyAndMemory, nodes []registry.Node, prom autoscale.PromQuerier, now time.Time) {
	p := sp.policy.WithDefaults()
	compute := p.Compute
	if compute == "" {
		compute = registry.ComputePhysarum
	}
	desired, err := listDesired(ctx, r.cli, svc)
	if err != nil {
		r.log.Warn("autoscaler: cannot read the desired count", "service", svc, "err", err)
		return
	}
	current := desired[pair{svc, compute}].Number
	samples := measure(ctx, p, svc, current, nodes, prom)
	d, h := autoscale.Decide(p, current, samples, sp.memory.History, now)
	if d.Changed {
		sctx := registry.WithCaller(ctx, autoscaleCaller)
		if _, err := r.ctl.Scale(sctx, svc, compute, d.Desired); err != nil {
			r.log.Warn("autoscaler: cannot set the desired count", "service", svc, "compute", compute, "to", d.Desired, "err", err)
			return
		}
		r.log.Info("autoscaler scaled", "service", svc, "compute", compute, "from", d.Current, "to", d.Desired, "reason", d.Reason)
		r.metrics.autoscaled(svc)
	}
	// Keep what changed the count or its reason (each is an event), and
	// the history with it; an evaluation that repeats the last one is
	// not written.
	if !d.Changed && sp.stored && sp.memory.Last.Reason == d.Reason && sp.memory.Last.Desired == d.Desired {
		return
	}
	if err := putJSON(ctx, r.cli, autoscaleDecisionKey(svc), storedDecision{Last: d, History: h}); err != nil {
		r.log.Warn("autoscaler: cannot keep the decision", "service", svc, "err", err)
	}
}

// measure takes one sample per check: for rps, inflight and cpu the
// service's total load, from the nodes' records, divided by its current
// count (so that Decide's ceil(current × value / target) is
// ceil(total / target)); for prometheus the query's value.
//
// Divided by the count, not by the instances that reported: right after a
// scale-out the new instances have not reported yet while the old ones
// still publish the load they carried alone (each figure is an average
// over seconds), and an average over the reporters would ask for the same
// load's instances a second time.
func measure(ctx context.Context, p registry.AutoscalePolicy, svc string, current int, nodes []registry.Node, prom autoscale.PromQuerier) []autoscale.Sample {
	var n, cpuN int
	var rps, inflight, cpu float64
	for _, nd := range nodes {
		for _, l := range nd.Load {
			if l.Service != svc {
				continue
			}
			n++
			rps += l.RPS
			inflight += float64(l.InFlight)
			if l.CPU != nil {
				cpuN++
				cpu += *l.CPU
			}
		}
	}
	per := func(sum float64) float64 { return sum / float64(max(current, 1)) }
	out := make([]autoscale.Sample, len(p.Checks))
	for i, c := range p.Checks {
		switch c.Metric {
		case registry.MetricRPS:
			out[i].Value = per(rps)
		case registry.MetricInflight:
			out[i].Value = per(inflight)
		case registry.MetricCPU:
			if n > 0 && cpuN == 0 {
				out[i].Value = math.NaN() // the runtimes cannot say
			} else {
				out[i].Value = per(cpu)
			}
		case registry.MetricPrometheus:
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			out[i].Value, out[i].Err = prom.Query(qctx, c.Query)
			cancel()
		}
	}
	return out
}
