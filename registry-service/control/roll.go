package control

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// roll reconciles a pair of a service whose rolling update runs: start
// first, at most MaxParallel new instances starting at once and at most
// MaxParallel beyond the desired count in all; an old instance stops for
// each new one that has run MinHealthyTime beyond the desired count. The
// old ones serve until then, so the service keeps its count of healthy
// instances throughout. A new instance that fails, or does not run
// within HealthyDeadline, fails the rollout (see failRollout).
func (r *Reconciler) roll(ctx context.Context, s *snapshot, p pair, ro registry.Rollout, sel registry.Selector, budget int) (int, int) {
	st := ro.Strategy.WithDefaults()
	now := r.cfg.Now()
	if cur := s.services[p.service].Version; !ro.Targets(cur) {
		r.endRollout(ctx, s, ro, registry.RolloutFailed, fmt.Sprintf("superseded: the definition is version %d now", cur), now)
		return 0, 0
	}
	live, failed := r.classify(s.pinned[p])
	for _, in := range failed {
		if ro.Targets(in.Version) {
			r.failRollout(ctx, s, ro, fmt.Sprintf("instance %s of version %d failed: %s", in.ID, in.Version, in.Message), now)
			return 0, 0
		}
	}
	actions := r.replaceFailed(p, failed, s)
	var old, fresh, healthy []registry.Instance
	for _, in := range live {
		switch {
		case !ro.Targets(in.Version):
			old = append(old, in)
		case in.State == registry.StateRunning && now.Sub(in.Started) >= time.Duration(st.MinHealthyTime):
			healthy = append(healthy, in)
		default:
			if now.Sub(in.Started) > time.Duration(st.HealthyDeadline) {
				r.failRollout(ctx, s, ro, fmt.Sprintf("instance %s of version %d did not run within %s", in.ID, in.Version, st.HealthyDeadline), now)
				return actions, 0
			}
			fresh = append(fresh, in)
		}
	}
	want := s.want(p)
	starting := len(fresh) + r.startsOf(p, live)
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
		used = r.startMissing(p, s, sel, n)
		actions += used
	}
	return actions, used
}

// finishRollouts records each running rollout's progress, and its end
// once every pair of its service runs only the new version, healthy.
// A rollout without progress for ProgressDeadline fails.
func (r *Reconciler) finishRollouts(ctx context.Context, s *snapshot) {
	now := r.cfg.Now()
	for svc, ro := range s.rollouts {
		if ro.State != registry.RolloutRunning {
			continue
		}
		st := ro.Strategy.WithDefaults()
		var healthy, want, old int
		for p, insts := range s.pinned {
			if p.service != svc {
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
			if p.service == svc {
				want += d.Number
			}
		}
		msg := rolloutMessage(ro, healthy, want, old)
		switch {
		case old == 0 && healthy >= want && r.startsOfService(svc) == 0:
			state := registry.RolloutSucceeded
			if ro.RevertOf != 0 {
				state = registry.RolloutReverted
			}
			r.endRollout(ctx, s, ro, state, msg, now)
		case msg != ro.Message:
			ro.Message, ro.Progress = msg, now.UTC()
			r.putRollout(ctx, ro)
			s.rollouts[svc] = ro
		case now.Sub(ro.Progress) > time.Duration(st.ProgressDeadline):
			r.failRollout(ctx, s, ro, fmt.Sprintf("no progress for %s (%s)", st.ProgressDeadline, msg), now)
		}
	}
}

// startsOfService counts the starts in flight of a service's pairs.
func (r *Reconciler) startsOfService(service string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.starts {
		if p.service == service {
			n++
		}
	}
	return n
}

// failRollout ends a rollout as failed and, with AutoRevert, starts one
// back to the definition it rolled from, registered as the next version
// (numbers never go back): its old instances count as the target, so
// only the new ones are replaced.
func (r *Reconciler) failRollout(ctx context.Context, s *snapshot, ro registry.Rollout, why string, now time.Time) {
	st := ro.Strategy.WithDefaults()
	r.endRollout(ctx, s, ro, registry.RolloutFailed, why, now)
	if !*st.AutoRevert || ro.RevertOf != 0 {
		return // a revert that fails is not reverted again
	}
	sctx := registry.WithCaller(ctx, "rollout revert")
	a, err := r.ctl.recs.AddService(sctx, ro.Service, registry.ServiceVersion{Info: ro.Previous, SetBy: "rollout revert", SetAt: now.UTC()})
	if err != nil {
		r.log.Warn("rollout: could not revert", "service", ro.Service, "err", err)
		return
	}
	back := registry.Rollout{
		Service: ro.Service, Strategy: ro.Strategy, From: ro.To, To: a.Version, Equivalent: []int{ro.From},
		Previous: ro.Previous, State: registry.RolloutRunning, Message: "reverting: " + why,
		RevertOf: ro.To, SetBy: "rollout revert", Started: now.UTC(), Progress: now.UTC(),
	}
	r.putRollout(ctx, back)
	s.rollouts[ro.Service] = back
	s.services[ro.Service] = withVersion(ro.Previous, a.Version)
	r.log.Warn("rollout failed; reverting", "service", ro.Service, "version", ro.To, "back_to", a.Version, "why", why)
}

// endRollout records a rollout's end (in the pass's snapshot too, so
// that the rest of the pass sees it).
func (r *Reconciler) endRollout(ctx context.Context, s *snapshot, ro registry.Rollout, state, msg string, now time.Time) {
	ro.State, ro.Message, ro.Finished, ro.Progress = state, msg, now.UTC(), now.UTC()
	r.putRollout(ctx, ro)
	s.rollouts[ro.Service] = ro
	r.log.Info("rollout ended", "service", ro.Service, "to", ro.To, "state", state, "message", msg)
}

// putRollout writes a rollout record (an event); a failure is logged and
// the next pass tries again from what it reads.
func (r *Reconciler) putRollout(ctx context.Context, ro registry.Rollout) {
	if err := putJSON(ctx, r.ctl.cli, rolloutKey(ro.Service), ro); err != nil {
		r.log.Warn("rollout: could not record progress", "service", ro.Service, "err", err)
	}
}

func withVersion(info registry.ServiceInfo, v int) registry.ServiceInfo {
	info.Version = v
	return info
}
