package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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
	if _, err := c.recs.GetService(ctx, service); err != nil {
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
	// The version and its rollout are one write: a proxy or the reconciler
	// never sees the new version without the rollout that says where it
	// serves, and a failed write leaves neither.
	var ro registry.Rollout
	along := &Along{
		Key: rolloutKey(service), ModRevision: rev,
		Changed: rolloutChanged(service),
		Value: func(prev *registry.ServiceInfo, version int) (string, error) {
			if prev == nil {
				return "", wire.Errorf(wire.CodeNotFound, "no service named %q", service)
			}
			previous := *prev
			previous.Version = 0
			ro = registry.Rollout{
				Service: service, Strategy: s.WithDefaults(), From: prev.Version, To: version, Previous: previous,
				State: registry.RolloutRunning, Message: "starting", SetBy: by, Started: now, Progress: now,
			}
			b, err := json.Marshal(ro)
			return string(b), err
		},
	}
	a, err := c.recs.AddServiceWith(ctx, service, registry.ServiceVersion{Info: info, SetBy: by, SetAt: now}, along)
	if err != nil {
		return registry.Rollout{}, err
	}
	if !a.Changed {
		return registry.Rollout{}, wire.Errorf(wire.CodeBadRequest, "service %s is unchanged (version %d): nothing to roll out", service, a.Version)
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
			out = append(out, ro.Rollout)
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

// putRollout writes a rollout if its key is still at rev (0: absent) and
// returns the revision of the write. Every writer (an update, a promote
// or rollback on any registry-service, the leader's reconciler) goes
// through it, so none overwrites a step it has not seen.
func (c *Control) putRollout(ctx context.Context, ro registry.Rollout, rev int64) (int64, error) {
	b, err := json.Marshal(ro)
	if err != nil {
		return 0, err
	}
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(rolloutKey(ro.Service)), "=", rev)).
		Then(clientv3.OpPut(rolloutKey(ro.Service), string(b))).Commit()
	if err != nil {
		return 0, unavailable("write rollout", err)
	}
	if !resp.Succeeded {
		return 0, rolloutChanged(ro.Service)
	}
	return resp.Header.Revision, nil
}

// rolloutChanged is the conflict of a rollout write whose record another
// writer moved since it was read.
func rolloutChanged(service string) error {
	return conflict("the rollout of %s changed meanwhile; look at registry-cli rollouts %s", service, service)
}

// storedRollout is a rollout record and its key's modification revision.
type storedRollout struct {
	registry.Rollout
	rev int64
}

// listRollouts reads every service's last rollout, by service.
func listRollouts(ctx context.Context, cli *clientv3.Client) (map[string]storedRollout, error) {
	resp, err := cli.Get(ctx, PrefixRollouts, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("read rollouts", err)
	}
	out := map[string]storedRollout{}
	for _, kv := range resp.Kvs {
		var ro registry.Rollout
		if json.Unmarshal(kv.Value, &ro) == nil && ro.Service == strings.TrimPrefix(string(kv.Key), PrefixRollouts) {
			out[ro.Service] = storedRollout{ro, kv.ModRevision}
		}
	}
	return out, nil
}

// Promote ends the rollback window of service's blue-green rollout: the
// reconciler stops the old set at its next pass.
func (c *Control) Promote(ctx context.Context, service string) (registry.Rollout, error) {
	ro, rev, err := c.runningRollout(ctx, service)
	if err != nil {
		return registry.Rollout{}, err
	}
	switch {
	case !ro.BlueGreen():
		return registry.Rollout{}, conflict("the rollout of %s to version %d is %s: only a blue-green rollout has a window to end", service, ro.To, ro.Strategy.Type)
	case ro.Switched.IsZero():
		return registry.Rollout{}, conflict("the rollout of %s to version %d has not switched yet (%s): promote once the new set serves", service, ro.To, ro.Message)
	case ro.Promoted:
		return ro, nil
	}
	ro.Promoted, ro.Message = true, "promoted by "+registry.CallerOf(ctx)+": stopping the old set"
	ro.Progress = c.cfg.Now().UTC()
	if _, err := c.putRollout(ctx, ro, rev); err != nil {
		return registry.Rollout{}, err
	}
	c.log.Info("rollout promoted", "service", service, "to", ro.To, "by", registry.CallerOf(ctx))
	return ro, nil // the leader's reconciler sees the record change
}

// Rollback ends service's running rollout and starts the one back to the
// definition it rolled from.
func (c *Control) Rollback(ctx context.Context, service string) (registry.Rollout, error) {
	ro, rev, err := c.runningRollout(ctx, service)
	if err != nil {
		return registry.Rollout{}, err
	}
	if ro.RevertOf != 0 {
		return registry.Rollout{}, conflict("the rollout of %s to version %d already goes back (from version %d)", service, ro.To, ro.RevertOf)
	}
	by := registry.CallerOf(ctx)
	back, _, err := c.revert(ctx, ro, rev, registry.RolloutRolledBack, "rolled back by "+by, c.cfg.Now())
	if err != nil {
		return registry.Rollout{}, err
	}
	return back, nil
}

// sameAs lists the versions whose definition is the one ro rolled from,
// but the revert's own (to): the old set's instances may be of any of
// them (a version registered again by an earlier revert has a number of
// its own), and all count as the revert's target. ro.From always does.
func (c *Control) sameAs(ctx context.Context, ro registry.Rollout, to int) []int {
	out := []int{ro.From}
	want, err := json.Marshal(withVersion(ro.Previous, 0))
	if err != nil {
		return out
	}
	vs, err := c.recs.ServiceHistory(ctx, ro.Service)
	if err != nil {
		c.log.Warn("rollout revert: versions unread; only the version rolled from counts as the old set", "service", ro.Service, "err", err)
		return out
	}
	for _, v := range vs {
		b, err := json.Marshal(withVersion(v.Info, 0))
		if err == nil && bytes.Equal(b, want) && v.Version != to && v.Version != ro.From {
			out = append(out, v.Version)
		}
	}
	slices.Sort(out)
	return out
}

// runningRollout reads service's rollout and its revision; conflict when
// none runs.
func (c *Control) runningRollout(ctx context.Context, service string) (registry.Rollout, int64, error) {
	if err := registry.ValidateName(service); err != nil {
		return registry.Rollout{}, 0, badRequest(err)
	}
	if _, err := c.recs.GetService(ctx, service); err != nil {
		return registry.Rollout{}, 0, err
	}
	ro, rev, err := c.readRollout(ctx, service)
	if err != nil {
		return registry.Rollout{}, 0, err
	}
	if ro == nil || ro.State != registry.RolloutRunning {
		what := "none was ever started"
		if ro != nil {
			what = fmt.Sprintf("the last one, to version %d, %s", ro.To, ro.State)
		}
		return registry.Rollout{}, 0, conflict("no rollout of %s is running (%s)", service, what)
	}
	return *ro, rev, nil
}

// revert ends ro (at rev) as state, saying why, then registers the
// definition it rolled from as the next version (numbers never go back)
// and starts the rollout to it: the old instances count as its target,
// so only the new ones are replaced. A blue-green revert switches every
// proxy back at once and keeps no window. It returns the revert rollout
// and the revision of its record.
func (c *Control) revert(ctx context.Context, ro registry.Rollout, rev int64, state, why string, now time.Time) (registry.Rollout, int64, error) {
	ended := ro
	ended.State, ended.Message, ended.Finished, ended.Progress = state, why, now.UTC(), now.UTC()
	rev, err := c.putRollout(ctx, ended, rev)
	if err != nil {
		return registry.Rollout{}, 0, err
	}
	sctx := registry.WithCaller(ctx, "rollout revert")
	a, err := c.recs.AddService(sctx, ro.Service, registry.ServiceVersion{Info: ro.Previous, SetBy: "rollout revert", SetAt: now.UTC()})
	if err != nil {
		return ended, rev, fmt.Errorf("%s ended, but the definition of version %d could not be registered again: %w", ro.Service, ro.From, err)
	}
	back := registry.Rollout{
		Service: ro.Service, Strategy: ro.Strategy, From: ro.To, To: a.Version, Equivalent: c.sameAs(ctx, ro, a.Version),
		Previous: ro.Previous, State: registry.RolloutRunning, Message: "reverting: " + why,
		RevertOf: ro.To, SetBy: "rollout revert", Started: now.UTC(), Progress: now.UTC(),
	}
	if back.BlueGreen() {
		back.Switched, back.Promoted = now.UTC(), true
	}
	if rev, err = c.putRollout(ctx, back, rev); err != nil {
		return ended, 0, err
	}
	c.log.Warn("rollout ended; reverting", "service", ro.Service, "version", ro.To, "back_to", a.Version, "state", state, "why", why)
	return back, rev, nil
}

// rolloutMessage sums a rollout's progress up.
func rolloutMessage(ro registry.Rollout, healthy, want, old int) string {
	msg := fmt.Sprintf("%d of %d on version %d, %d of an older version left", healthy, want, ro.To, old)
	if !ro.BlueGreen() || old == 0 {
		return msg
	}
	switch {
	case ro.Switched.IsZero():
		return msg + "; the old set serves until the new one is healthy"
	case ro.Promoted:
		return msg + "; version " + strconv.Itoa(ro.To) + " serves, stopping the old set"
	}
	until := ro.Switched.Add(time.Duration(ro.Strategy.WithDefaults().RollbackWindow)).UTC().Format(time.RFC3339)
	return msg + "; version " + strconv.Itoa(ro.To) + " serves, the old set stands by until " + until + " (promote or rollback)"
}
