package control

import (
	"context"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/registry-service/election"
)

// NewReconciler returns a Reconciler that reads through ctl, watches and
// campaigns on cli (a client to the cluster: an in-process one ignores
// WithRequireLeader), starts and stops instances from h (the
// registry-service's libp2p host) and drives external connectors over
// HTTP.
func NewReconciler(ctl *Control, cli *clientv3.Client, h host.Host, cfg ReconcilerConfig) *Reconciler {
	cfg.defaults()
	return NewReconcilerWith(ctl, cli, hostDeployer{h}, newHTTPConnector(cfg.ConnectorTimeout), cfg)
}

// Run campaigns for leadership among the registry-services that run it
// and reconciles while it leads, until ctx ends. Losing the lead (its
// session lapsed: etcd unreachable, a long pause) returns it to the
// campaign. It waits for the starts and stops it launched before
// returning.
func (r *Reconciler) Run(ctx context.Context) {
	defer r.metrics.unregister()
	defer r.wg.Wait()
	election.Run(ctx, r.cli, election.Config{
		Key: electionPrefix, Name: r.cfg.Name, TTL: r.cfg.ElectionTTL, What: "reconciler",
		LeadsLine: LeadsLine, Logger: r.log,
	}, func(ctx context.Context, _ election.Term) error { return r.lead(ctx) }, r.metrics.leading)
}

// LeadsLine is what the reconciler logs when its registry-service becomes
// the leader.
const LeadsLine = "reconciler: this registry-service leads"

// lead reconciles on every relevant change (gathered for Debounce) and
// every Resync, until ctx ends.
func (r *Reconciler) lead(ctx context.Context) error {
	if err := r.load(ctx); err != nil {
		return err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.autoscaleLoop(ctx)
	}()
	watch := r.cli.Watch(clientv3.WithRequireLeader(ctx), "/physarum/", clientv3.WithPrefix())
	tick := time.NewTicker(r.cfg.Resync)
	defer tick.Stop()
	r.trigger()
	var gather <-chan time.Time  // set while changes are being gathered
	var rewatch <-chan time.Time // set while the watch is down
	var wake <-chan time.Time    // set while a backoff is to end
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-rewatch:
			rewatch = nil
			watch = r.cli.Watch(clientv3.WithRequireLeader(ctx), "/physarum/", clientv3.WithPrefix())
			r.trigger() // changes may have been missed meanwhile
			continue
		case wr, ok := <-watch:
			if !ok || wr.Err() != nil {
				// etcd lost its leader or compacted: watch again in a
				// moment, not in a tight loop.
				watch, rewatch = nil, time.After(time.Second)
				continue
			}
			if relevant(wr.Events) && gather == nil {
				gather = time.After(r.cfg.Debounce)
			}
			continue
		case <-gather:
		case <-tick.C:
		case <-r.kick:
		case <-wake:
		}
		gather, wake = nil, nil
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("reconcile pass failed", "err", err)
		}
		if d := r.nextWake(r.cfg.Now()); d > 0 {
			wake = time.After(d + time.Millisecond)
		}
	}
}

// relevant reports whether a change can alter what the reconciler
// should do: not its own state records, nor the election's, nor the
// callbacks' (their delivery state changes with every delivery), nor a
// service's versions (written with its definition, whose key is the
// change that matters).
func relevant(evs []*clientv3.Event) bool {
	for _, ev := range evs {
		k := string(ev.Kv.Key)
		if ev.IsModify() && strings.HasPrefix(k, prefixNodes) {
			// A node's heartbeat that changed its record (its load, its
			// free capacity): the periodic pass takes that in; passes on
			// every heartbeat would cost more than they bring.
			continue
		}
		if !strings.HasPrefix(k, PrefixReconcile) && !strings.HasPrefix(k, electionPrefix) && !strings.HasPrefix(k, "/physarum/members/") &&
			!strings.HasPrefix(k, PrefixCallbacks) && !strings.HasPrefix(k, PrefixCallbackState) && !strings.HasPrefix(k, callbacksElection) &&
			!strings.HasPrefix(k, PrefixAutoscale) && !strings.HasPrefix(k, PrefixVersions) {
			return true
		}
	}
	return false
}

// prefixNodes holds the allocators' node records (registry-service/server's
// store).
const prefixNodes = "/physarum/nodes/"

// callbacksElection is the callbacks' delivery worker's election
// (registry-service/callbacks.ElectionKey).
const callbacksElection = "/physarum/election/callbacks"
