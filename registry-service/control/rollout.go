package control

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// PrefixRollouts holds each service's last rollout at <prefix><service>:
// an event of topic rollout at every step.
const PrefixRollouts = "/physarum/rollouts/"

func rolloutKey(service string) string { return PrefixRollouts + service }

var _ registry.Updaters = (*Control)(nil)

// updateMu serialises this registry-service's updates: an update reads
// the last rollout, registers a version and writes the new rollout.
var updateMu sync.Mutex

// Update registers info as service's next version and starts rolling its
// pinned instances over to it. It is refused while a rollout of the
// service runs (conflict), for an unknown service (not found), and when
// info is the current definition already (nothing to roll out).
func (c *Control) Update(ctx context.Context, service string, info registry.ServiceInfo, s registry.Strategy) (registry.Rollout, error) {
	if err := registry.ValidateName(service); err != nil {
		return registry.Rollout{}, badRequest(err)
	}
	if err := info.Validate(); err != nil {
		return registry.Rollout{}, badRequest(err)
	}
	if err := s.Validate(); err != nil {
		return registry.Rollout{}, badRequest(err)
	}
	updateMu.Lock()
	defer updateMu.Unlock()
	prev, err := c.recs.GetService(ctx, service)
	if err != nil {
		return registry.Rollout{}, err
	}
	last, rev, err := c.readRollout(ctx, service)
	if err != nil {
		return registry.Rollout{}, err
	}
	if last != nil && last.State == registry.RolloutRunning {
		return registry.Rollout{}, conflict("a rollout of %s to version %d is running (%s); wait for it to end", service, last.To, last.Message)
	}
	info.Version = 0
	by := registry.CallerOf(ctx)
	now := c.cfg.Now().UTC()
	a, err := c.recs.AddService(ctx, service, registry.ServiceVersion{Info: info, SetBy: by, SetAt: now})
	if err != nil {
		return registry.Rollout{}, err
	}
	if !a.Changed {
		return registry.Rollout{}, wire.Errorf(wire.CodeBadRequest, "service %s is unchanged (version %d): nothing to roll out", service, a.Version)
	}
	previous := prev
	previous.Version = 0
	ro := registry.Rollout{
		Service: service, Strategy: s.WithDefaults(), From: prev.Version, To: a.Version, Previous: previous,
		State: registry.RolloutRunning, Message: "starting", SetBy: by, Started: now, Progress: now,
	}
	if err := c.putRollout(ctx, ro, rev); err != nil {
		return registry.Rollout{}, err
	}
	c.log.Info("rollout started", "service", service, "from", ro.From, "to", ro.To, "strategy", ro.Strategy.Type, "by", by)
	return ro, nil
}

// Rollouts lists the last rollout of service ("": of every service).
func (c *Control) Rollouts(ctx context.Context, service string) ([]registry.Rollout, error) {
	if service != "" {
		if err := registry.ValidateName(service); err != nil {
			return nil, badRequest(err)
		}
	}
	all, err := listRollouts(ctx, c.cli)
	if err != nil {
		return nil, err
	}
	var out []registry.Rollout
	for _, ro := range all {
		if service == "" || ro.Service == service {
			out = append(out, ro)
		}
	}
	return out, nil
}

// readRollout reads service's last rollout (nil: none) and its key's
// modification revision (0: none), for a write that must not race.
func (c *Control) readRollout(ctx context.Context, service string) (*registry.Rollout, int64, error) {
	resp, err := c.cli.Get(ctx, rolloutKey(service))
	if err != nil {
		return nil, 0, unavailable("read rollout", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	var ro registry.Rollout
	if err := json.Unmarshal(resp.Kvs[0].Value, &ro); err != nil {
		return nil, resp.Kvs[0].ModRevision, nil
	}
	return &ro, resp.Kvs[0].ModRevision, nil
}

// putRollout writes a rollout if its key is still at rev (0: absent).
func (c *Control) putRollout(ctx context.Context, ro registry.Rollout, rev int64) error {
	b, err := json.Marshal(ro)
	if err != nil {
		return err
	}
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(rolloutKey(ro.Service)), "=", rev)).
		Then(clientv3.OpPut(rolloutKey(ro.Service), string(b))).Commit()
	if err != nil {
		return unavailable("write rollout", err)
	}
	if !resp.Succeeded {
		return conflict("another update of %s began meanwhile; look at registry-cli rollouts %s", ro.Service, ro.Service)
	}
	return nil
}

// listRollouts reads every service's last rollout, by service.
func listRollouts(ctx context.Context, cli *clientv3.Client) (map[string]registry.Rollout, error) {
	resp, err := cli.Get(ctx, PrefixRollouts, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("read rollouts", err)
	}
	out := map[string]registry.Rollout{}
	for _, kv := range resp.Kvs {
		var ro registry.Rollout
		if json.Unmarshal(kv.Value, &ro) == nil && ro.Service == strings.TrimPrefix(string(kv.Key), PrefixRollouts) {
			out[ro.Service] = ro
		}
	}
	return out, nil
}

// rolloutMessage sums a rollout's progress up.
func rolloutMessage(ro registry.Rollout, healthy, want, old int) string {
	return fmt.Sprintf("%d of %d on version %d, %d of an older version left", healthy, want, ro.To, old)
}
