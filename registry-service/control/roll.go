package control

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// rollout reconciles a pair of a service whose rollout runs, by its
// strategy. A rollout whose target is no longer the current definition
// (a newer version was registered) ends as superseded.
func (r *Reconciler) rollout(ctx context.Context, s *snapshot, p pair, ro storedRollout, sel registry.Selector, budget int) (int, int) {
	if cur := s.services[p.service].Version; !ro.Targets(cur) {
		r.endRollout(ctx, s, ro, registry.RolloutFailed, fmt.Sprintf("superseded: the definition is version %d now", cur))
		return 0, 0
	}
	if ro.BlueGreen() {
		return r.blueGreen(ctx, s, p, ro, sel, budget)
	}
	return r.roll(ctx, s, p, ro, sel, budget)
}

// rollSets is a pair's live pinned instances during a rollout: old ones
// (not of the target), new ones healthy (running for MinHealthyTime),
// and new ones on their way.
type rollSets struct {
	old, healthy, fresh []registry.Instance
}

// sets splits live; ok is false once it has failed the rollout (a new
// instance not running within HealthyDeadline).
func (r *Reconciler) sets(ctx context.Context, s *snapshot, ro storedRollout, live []registry.Instance) (rollSets, bool) {
	st := ro.Strategy.WithDefaults()
	now := r.cfg.Now()
	var out rollSets
	for _, in := range live {
		switch {
		case !ro.Targets(in.Version):
			out.old = append(out.old, in)
		case in.State == registry.StateRunning && now.Sub(in.Started) >= time.Duration(st.MinHealthyTime):
			out.healthy = append(out.healthy, in)
		default:
			if now.Sub(in.Started) > time.Duration(st.HealthyDeadline) {
				r.failRollout(ctx, s, ro, fmt.Sprintf("instance %s of version %d did not run within %s", in.ID, in.Version, st.HealthyDeadline))
				return out, false
			}
			out.fresh = append(out.fresh, in)
		}
	}
	return out, true
}

// failedNew fails the rollout when one of failed is of its target, and
// reports whether it did.
func (r *Reconciler) failedNew(ctx context.Context, s *snapshot, ro storedRollout, failed []registry.Instance) bool {
	for _, in := range failed {
		if ro.Targets(in.Version) {
			r.failRollout(ctx, s, ro, fmt.Sprintf("instance %s of version %d failed: %s", in.ID, in.Version, in.Message))
			return true
		}
	}
	return false
}

// roll reconciles a pair of a service whose rolling update runs: start
// first, at most MaxParallel new instances starting at once and at most
// MaxParallel beyond the desired count in all; an old instance stops for
// each new one that has run MinHealthyTime beyond the desired count. The
// old ones serve until then, so the service keeps its count of healthy
// instances throughout. A new instance that fails, or does not run
// within HealthyDeadline, fails the rollout (see failRollout).
func (r *Reconciler) roll(ctx context.Context, s *snapshot, p pair, ro storedRollout, sel registry.Selector, budget int) (int, int) {
	st := ro.Strategy.WithDefaults()
	live, failed := r.classify(s.pinned[p])
	if r.failedNew(ctx, s, ro, failed) {
		return 0, 0
	}
	actions := r.replaceFailed(p, failed, s)
	set, ok := r.sets(ctx, s, ro, live)
	if !ok {
		return actions, 0
	}
	old, healthy := set.old, set.healthy
	want := s.want(p)
	starting := len(set.fresh) + r.startsOf(p, live)
	// An old instance stops for each healthy new one beyond the count,
	// oldest first.
	if excess := min(len(old)+len(healthy)-want, len(old)); excess > 0 {
		slices.SortFunc(old, func(a, b registry.Instance) int { return a.Started.Compare(b.Started) })
		for _, in := range old[:excess] {
			r.stop(p, in, s, fmt.Sprintf("replaced by version %d", ro.To))
		}
		old = old[excess:]
		actions += excess
	}
	// New ones start while fewer than the count are new, within the
	// parallelism and the surge.
	n := min(st.MaxParallel-starting, want-len(healthy)-starting, want+st.MaxParallel-len(old)-len(healthy)-starting, max(budget, 0))
	used := 0
	if n > 0 {
		used = r.startMissing(p, s, sel, s.services[p.service], n)
		actions += used
	}
	return actions, used
}

// blueGreen reconciles a pair of a service whose blue-green rollout runs.
//
// Before the switch the old set alone serves (the route keeps proxies off
// the new one) and is kept at the count from the old definition, while
// the whole new set starts beside it; a new instance that fails, or does
// not run within HealthyDeadline, fails the rollout, which reverts.
// finishRollouts switches once every pair's new set has been healthy for
// MinHealthyTime. After the switch the new set serves and is kept at the
// count; the old set idles until the rollback window ends or a promote,
// then stops.
func (r *Reconciler) blueGreen(ctx context.Context, s *snapshot, p pair, ro storedRollout, sel registry.Selector, budget int) (int, int) {
	live, failed := r.classify(s.pinned[p])
	switched := !ro.Switched.IsZero()
	if !switched && r.failedNew(ctx, s, ro, failed) {
		return 0, 0
	}
	actions := r.replaceFailed(p, failed, s)
	set, ok := r.sets(ctx, s, ro, live)
	if !ok {
		return actions, 0
	}
	want := s.want(p)
	isNew := func(in registry.Instance) bool { return ro.Targets(in.Version) }
	newCount := len(set.healthy) + len(set.fresh) + r.startsWhere(p, live, ro.Targets)
	used := 0
	if n := min(want-newCount, max(budget, 0)); n > 0 {
		used = r.startMissing(p, s, sel, s.services[p.service], n)
		actions += used
	}
	if !switched {
		oldCount := len(set.old) + r.startsWhere(p, live, func(v int) bool { return !ro.Targets(v) })
		if n := min(want-oldCount, max(budget-used, 0)); n > 0 && ro.From > 0 {
			n = r.startMissing(p, s, sel, withVersion(ro.Previous, ro.From), n)
			used += n
			actions += n
		}
		return actions, used
	}
	if windowOver(ro.Rollout, r.cfg.Now()) {
		for _, in := range set.old {
			r.stop(p, in, s, fmt.Sprintf("blue-green: version %d serves", ro.To))
			actions++
		}
	}
	// A new set larger than the count (the count went down) loses its
	// newest first.
	if extra := newCount - want; extra > 0 && r.startsWhere(p, live, ro.Targets) == 0 {
		actions += r.stopSurplus(p, slices.DeleteFunc(slices.Clone(live), func(in registry.Instance) bool { return !isNew(in) }), extra, s)
	}
	return actions, used
}

// windowOver reports whether a switched blue-green rollout's old set may
// stop: promoted, or its rollback window over.
func windowOver(ro registry.Rollout, now time.Time) bool {
	if ro.Switched.IsZero() {
		return false
	}
	return ro.Promoted || now.Sub(ro.Switched) >= time.Duration(ro.Strategy.WithDefaults().RollbackWindow)
}

// finishRollouts records each running rollout's progress: a blue-green
// one's switch once its whole new set is healthy, and the end of any once
// every pair of its service runs only the new version, healthy. A
// rollout without progress for ProgressDeadline fails (a blue-green one
// only before its switch: after, the old set waits for its window).
func (r *Reconciler) finishRollouts(ctx context.Context, s *snapshot) {
	now := r.cfg.Now()
	r.setRolloutWake(time.Time{})
	for svc, ro := range s.rollouts {
		if ro.State != registry.RolloutRunning {
			continue
		}
		st := ro.Strategy.WithDefaults()
		healthy, want, old := r.rolloutCounts(s, ro)
		msg := rolloutMessage(ro.Rollout, healthy, want, old)
		switch {
		case old == 0 && healthy >= want && r.startsOfService(svc) == 0:
			state := registry.RolloutSucceeded
			if ro.RevertOf != 0 {
				state = registry.RolloutReverted
			}
			r.endRollout(ctx, s, ro, state, msg)
			continue
		case ro.BlueGreen() && ro.Switched.IsZero() && healthy >= want:
			ro.Switched = now.UTC()
			ro.Message, ro.Progress = msg, now.UTC()
			r.putRollout(ctx, s, ro)
			r.log.Info("blue-green: switched", "service", svc, "to", ro.To, "old_left", old, "window", st.RollbackWindow)
		case msg != ro.Message:
			ro.Message, ro.Progress = msg, now.UTC()
			r.putRollout(ctx, s, ro)
		case ro.Switched.IsZero() && now.Sub(ro.Progress) > time.Duration(st.ProgressDeadline):
			r.failRollout(ctx, s, ro, fmt.Sprintf("no progress for %s (%s)", st.ProgressDeadline, msg))
			continue
		}
		if windowOver(ro.Rollout, now) {
			r.stopStandby(s, ro)
		}
		// Steps wait on time (min_healthy_time, the window): look again
		// within a second, or at the window's end if sooner.
		wake := now.Add(time.Second)
		if !ro.Switched.IsZero() && !ro.Promoted {
			wake = minTime(wake, ro.Switched.Add(time.Duration(st.RollbackWindow)))
		}
		r.setRolloutWake(wake)
	}
}

// rolloutCounts counts a rollout's service's pinned instances: new ones
// healthy, the desired count, and old ones live.
func (r *Reconciler) rolloutCounts(s *snapshot, ro storedRollout) (healthy, want, old int) {
	st := ro.Strategy.WithDefaults()
	now := r.cfg.Now()
	for p, insts := range s.pinned {
		if p.service != ro.Service {
			continue
		}
		live, _ := r.classify(insts)
		for _, in := range live {
			switch {
			case !ro.Targets(in.Version):
				old++
			case in.State == registry.StateRunning && now.Sub(in.Started) >= time.Duration(st.MinHealthyTime):
				healthy++
			}
		}
	}
	for p, d := range s.desired {
		if p.service == ro.Service {
			want += d.Number
		}
	}
	return healthy, want, old
}

// stopStandby stops the on-demand instances a blue-green rollout's route
// keeps out of service once its window is over (pinned ones stop with
// their pair): no proxy sends them anything any more.
func (r *Reconciler) stopStandby(s *snapshot, ro storedRollout) {
	rt := ro.Route()
	for _, in := range s.byID {
		if in.Service == ro.Service && in.OnDemand && !rt.Serves(in.Version) && in.State != registry.StateStopping {
			r.mu.Lock()
			stopping := r.stopping[in.ID]
			r.mu.Unlock()
			if !stopping {
				r.stop(pair{service: ro.Service}, in, s, fmt.Sprintf("blue-green: version %d serves", ro.To))
			}
		}
	}
}

// startsOfService counts the starts in flight of a service's pairs.
func (r *Reconciler) startsOfService(service string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, st := range r.starts {
		if st.service == service {
			n++
		}
	}
	return n
}

// failRollout ends a rollout as failed and, with AutoRevert (always for
// a blue-green one, which has not switched: a failure after the switch
// does not fail it), starts one back to the definition it rolled from.
// A revert that fails is not reverted again.
func (r *Reconciler) failRollout(ctx context.Context, s *snapshot, ro storedRollout, why string) {
	st := ro.Strategy.WithDefaults()
	if (!*st.AutoRevert && !ro.BlueGreen()) || ro.RevertOf != 0 {
		r.endRollout(ctx, s, ro, registry.RolloutFailed, why)
		return
	}
	back, rev, err := r.ctl.revert(ctx, ro.Rollout, ro.rev, registry.RolloutFailed, why, r.cfg.Now())
	if err != nil {
		r.log.Warn("rollout: could not revert", "service", ro.Service, "err", err)
		delete(s.rollouts, ro.Service) // the next pass reads what was written
		return
	}
	s.rollouts[ro.Service] = storedRollout{back, rev}
	s.services[ro.Service] = withVersion(ro.Previous, back.To)
}

// endRollout records a rollout's end (in the pass's snapshot too, so
// that the rest of the pass sees it).
func (r *Reconciler) endRollout(ctx context.Context, s *snapshot, ro storedRollout, state, msg string) {
	now := r.cfg.Now().UTC()
	ro.State, ro.Message, ro.Finished, ro.Progress = state, msg, now, now
	r.putRollout(ctx, s, ro)
	r.log.Info("rollout ended", "service", ro.Service, "to", ro.To, "state", state, "message", msg)
}

// putRollout writes a rollout record (an event) if nobody wrote it since
// the pass read it, and keeps the pass's snapshot current. A failure is
// logged, and the rollout left out of the rest of the pass: the next pass
// starts again from what it reads (a promote or rollback meanwhile).
func (r *Reconciler) putRollout(ctx context.Context, s *snapshot, ro storedRollout) {
	rev, err := r.ctl.putRollout(ctx, ro.Rollout, ro.rev)
	if err != nil {
		r.log.Info("rollout: record not written; the next pass reads it again", "service", ro.Service, "err", err)
		delete(s.rollouts, ro.Service)
		r.trigger()
		return
	}
	ro.rev = rev
	s.rollouts[ro.Service] = ro
}

// setRolloutWake asks for a pass by t (zero: clears, for a new round).
func (r *Reconciler) setRolloutWake(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.IsZero() || r.rolloutWake.IsZero() || t.Before(r.rolloutWake) {
		r.rolloutWake = t
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func withVersion(info registry.ServiceInfo, v int) registry.ServiceInfo {
	info.Version = v
	return info
}
