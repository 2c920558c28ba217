// Package autoscale decides a service's desired count from its load
// (SPEC.md section 12, issue 15). Decide is a pure function of the policy,
// this evaluation's metric values, the current count, the History of
// recent recommendations and the time: the leader's reconciler gathers the
// inputs, persists the History between evaluations (and across leader
// changes) and applies the Decision, and every rule below is table-tested
// here without a cluster or a clock. The package also reads Prometheus
// queries for the prometheus metric (PromQuerier).
//
// # The algorithm
//
// Every evaluation_interval (default 10 s) the caller measures each of the
// policy's checks and calls Decide:
//
//  1. Bounds first. A current count outside [min, max] (a policy just set
//     or changed) goes to the nearest bound at once, whatever the metrics
//     and the cooldown say.
//  2. Each check compares its metric per instance with its target: with
//     r = metric / target, a check within the tolerance (|r − 1| ≤ 10 %)
//     wants the current count, any other wants ceil(current × r). For rps,
//     inflight and cpu the caller passes the average per running instance.
//     A prometheus query's one number is the service's total (say
//     sum(rate(http_requests_total[1m]))), so per instance it is
//     value / current and the check wants ceil(value / target).
//  3. Zero. current × r is 0 whatever the load, so from a count of 0 any
//     demand (metric > 0: the proxies' on-demand start woke the service,
//     and the caller passes that instance's load) counts from 1 instance:
//     the check wants max(1, ceil(metric / target)), without the
//     tolerance. Any metric above 0 wants at least 1 instance; only a
//     metric of exactly 0 wants 0, which min 0 allows.
//  4. The largest count any check wants is the recommendation; it is
//     recorded in the History with its time.
//  5. Scale-out follows the recommendation at once, at most
//     max(2 × current, current + 4) per step, and never above max.
//  6. Scale-down waits until every recommendation recorded in the
//     stabilization window (default 5 min) wants fewer instances than run
//     now: a brief dip changes nothing. Then it goes, in one step and never
//     below min, to the highest recommendation of the window's second
//     half. Not of the whole window, as the HPA does: when load stops, the
//     metric falls over a few evaluations (each proxy's figure is an
//     average over 5 s), and the HPA's rule would follow that fall down a
//     step at a time as each of its points leaves the window; the second
//     half holds only what the load settled at. Until the History covers a
//     whole window (a new policy, or no recorded evaluation for longer
//     than a window), nothing scales down.
//  7. After a change, nothing changes for the cooldown (default 30 s), in
//     either direction; recommendations are still recorded.
//  8. A check without a value (no data yet, a failed or ambiguous query)
//     stops the evaluation: no change, nothing recorded, and the reason
//     names the check.
//
// # Compared with Kubernetes' HPA
//
// The HPA's defaults are the anchor. It syncs every 15 s (we evaluate every
// 10 s), ignores usage ratios within 10 % of 1 (the same tolerance),
// scales down to the highest recommendation of the last 5 min (the same
// window; we wait for the whole window to want fewer, then take its second
// half's highest, rule 6), and scales up by at most max(100 %, 4 pods) per 15 s
// (our max(2×, +4) per step). It differs in three ways:
//
//   - Cooldown. The HPA has none: its scale-up limit per period, and its
//     counting of pods that are not ready yet as idle, keep it from counting
//     the same load twice. Our averages come from the proxies of running
//     instances, reported every few seconds, so the evaluation right after
//     a scale-out still sees the load spread over the old count and would
//     scale out again for the same load. The cooldown (three default
//     evaluations) lets the new instances start and report first. It holds
//     back a scale-out too, which costs at most one cooldown of reaction
//     when load grows right after a change; a policy that wants faster
//     steps sets a shorter cooldown.
//   - Missing metrics. The HPA scales up on the metrics it has when others
//     fail; we change nothing, so that a broken exporter or an ambiguous
//     query never moves the count, and the reason says which check failed.
//   - Zero. The HPA's minReplicas is at least 1 (going to 0 needs an alpha
//     feature gate and an external metric); here min 0 is ordinary,
//     because the proxies wake a service on its next request.
package autoscale

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// Tolerance is how far a metric may be from its target, as a fraction of
// the target, before a check wants another count (the HPA's default).
const Tolerance = 0.1

// Sample is one check's measurement for an evaluation.
type Sample struct {
	// Value is the load per instance for rps, inflight and cpu: the
	// service's total over the current count (over 1 at count 0; 0 when
	// nothing runs: no demand), and the query's one number, the service's
	// total, for prometheus. NaN, an infinity or a negative
	// value counts as missing.
	Value float64
	// Err, when set, says why there is no value (the query failed or
	// returned several series); the sample counts as missing.
	Err error
}

// History is what Decide remembers between evaluations. The caller keeps
// it (in etcd, beside the policy) and passes the one Decide returned to
// the next call; a zero History is a fresh start, which holds scale-down
// back for one stabilization window. It stays small: at most max + 1
// records. Keep it when the policy is edited (it holds counts, not metric
// values); start from a zero History when autoscaling is turned on again.
type History struct {
	// Window holds the recommendations of the last stabilization window,
	// oldest first, without those a later one equals or exceeds (they can
	// no longer be the highest): the counts strictly decrease, and the
	// first is the highest of the window.
	Window []Record `json:"window,omitempty"`
	// Since is when the current unbroken run of recorded evaluations
	// began; a gap longer than the window starts a new one.
	Since time.Time `json:"since,omitzero"`
	// LastChange is when Decide last changed the count; the cooldown
	// runs from it. A caller may set it when an operator scales by hand.
	LastChange time.Time `json:"last_change,omitzero"`
}

// Record is one evaluation's recommendation.
type Record struct {
	At    time.Time `json:"at"`
	Count int       `json:"count"`
}

// Decision is the outcome of one evaluation (registry's type: events and
// status carry it).
type Decision = registry.AutoscaleDecision

// Recommendation is what one check measured and the count it wants.
type Recommendation = registry.AutoscaleRecommendation

// Decide evaluates policy p at time now for a service whose desired count
// is current, with samples[i] the measurement of p.Checks[i], and returns
// the decision and the History to pass to the next evaluation. It
// neither keeps nor changes anything else, and does not modify h. An
// invalid policy changes nothing, and the reason says why.
func Decide(p registry.AutoscalePolicy, current int, samples []Sample, h History, now time.Time) (Decision, History) {
	current = max(current, 0)
	d := Decision{At: now, Current: current, Desired: current}
	h.Window = append([]Record(nil), h.Window...)
	if err := p.Validate(); err != nil {
		d.Reason = "no change: the policy is " + err.Error()
		return d, h
	}
	p = p.WithDefaults()
	window, cooldown := time.Duration(p.StabilizationWindow), time.Duration(p.Cooldown)

	recs, phrases, missing := evaluate(p, current, samples)
	d.Recommendations = recs
	recommended := 0
	for _, r := range recs {
		recommended = max(recommended, r.Count)
	}
	if len(missing) == 0 {
		// Counts above max weigh no more than max: capped, the History
		// keeps at most max+1 records.
		h.record(now, min(recommended, p.Max), window)
	} else {
		h.prune(now, window)
	}

	// 1. The policy's bounds come first.
	switch {
	case current < p.Min:
		return change(d, p.Min, fmt.Sprintf("%d → %d: below the policy's min %d", current, p.Min, p.Min)), h.changed(now)
	case current > p.Max:
		return change(d, p.Max, fmt.Sprintf("%d → %d: above the policy's max %d", current, p.Max, p.Max)), h.changed(now)
	}
	// 8. A missing value changes nothing.
	if len(missing) > 0 {
		d.Reason = "no change: " + strings.Join(missing, "; ")
		return d, h
	}

	checks := strings.Join(phrases, ", ")
	want, outcome := current, ""
	switch {
	case recommended > current:
		step := max(2*current, current+4)
		want = min(recommended, step, p.Max)
		switch {
		case want == current:
			outcome = fmt.Sprintf("stays at max %d", p.Max)
		case want == recommended:
			outcome = fmt.Sprintf("%d → %d", current, want)
		case want == p.Max:
			outcome = fmt.Sprintf("%d → %d, capped at max %d (wanted %d)", current, want, p.Max, recommended)
		default:
			outcome = fmt.Sprintf("%d → %d, at most max(2×%d, %d+4) = %d per step (wanted %d)", current, want, current, current, step, recommended)
		}
	case recommended < current:
		highest := h.highest()
		switch {
		case !h.covers(now, window):
			outcome = fmt.Sprintf("stays at %d: scale-down waits until %s of recommendations are recorded (%s to go)",
				current, window, h.Since.Add(window).Sub(now).Round(time.Second))
		case highest >= current:
			outcome = fmt.Sprintf("stays at %d: the highest recommendation in the last %s is %d", current, window, highest)
		case max(highest, p.Min) == current:
			outcome = fmt.Sprintf("stays at min %d (wanted %d)", p.Min, highest)
		default:
			// The whole window wants fewer: go to what its second half
			// wants (rule 6), in one step.
			settled := h.highestSince(now.Add(-window / 2))
			want = max(settled, p.Min)
			outcome = fmt.Sprintf("%d → %d, the highest recommendation in the last %s (all of the last %s were below %d)", current, want, window/2, window, current)
			if want > settled {
				outcome = fmt.Sprintf("%d → %d, the policy's min (the highest recommendation in the last %s is %d)", current, want, window/2, settled)
			}
			if want == current {
				outcome = fmt.Sprintf("stays at %d", current)
			}
		}
	default:
		outcome = fmt.Sprintf("stays at %d", current)
	}
	if want == current {
		d.Reason = checks + ": " + outcome
		return d, h
	}
	// 7. The cooldown holds every change back for a while.
	if !h.LastChange.IsZero() && now.Before(h.LastChange.Add(cooldown)) {
		d.Reason = fmt.Sprintf("%s: would go %d → %d, but the cooldown holds it for another %s (%s after the change)",
			checks, current, want, h.LastChange.Add(cooldown).Sub(now).Round(time.Millisecond), cooldown)
		return d, h
	}
	return change(d, want, checks+": "+outcome), h.changed(now)
}

// evaluate works out what each check wants (rules 2 and 3), with a phrase
// per check for the reason, and the phrases of the checks that have no
// value.
func evaluate(p registry.AutoscalePolicy, current int, samples []Sample) (recs []Recommendation, phrases, missing []string) {
	for i, c := range p.Checks {
		r := Recommendation{Metric: c.Metric, Query: c.Query, Target: c.Target}
		var s Sample
		if i < len(samples) {
			s = samples[i]
		} else {
			s = Sample{Err: errors.New("not measured")}
		}
		if why := s.missing(); why != "" {
			r.Missing = why
			recs = append(recs, r)
			missing = append(missing, fmt.Sprintf("%s has no value (%s)", label(c), why))
			continue
		}
		// total is the load of the whole service, as if it ran at least
		// one instance (rule 3).
		n := float64(max(current, 1))
		r.Value, r.PerInstance = s.Value, s.Value
		total := s.Value * n
		if c.Metric == registry.MetricPrometheus {
			r.PerInstance, total = s.Value/n, s.Value
		}
		ratio := r.PerInstance / c.Target
		var phrase string
		switch {
		case current == 0 && r.PerInstance > 0:
			r.Count = max(1, ceilCount(total/c.Target))
			phrase = fmt.Sprintf("%s at 0 instances, target %s: demand wants at least 1", measured(c, r), target(c))
		case math.Abs(ratio-1) <= Tolerance+1e-9: // 55/50 is 1.1000000000000001
			r.Count = current
			phrase = fmt.Sprintf("%s within %d%% of target %s", measured(c, r), int(Tolerance*100), target(c))
		default:
			r.Count = ceilCount(total / c.Target)
			cmp := ">"
			if ratio < 1 {
				cmp = "<"
			}
			phrase = fmt.Sprintf("%s %s target %s (tolerance %d%%)", measured(c, r), cmp, target(c), int(Tolerance*100))
		}
		if len(p.Checks) > 1 {
			phrase += fmt.Sprintf(" wants %d", r.Count)
		}
		recs = append(recs, r)
		phrases = append(phrases, phrase)
	}
	return recs, phrases, missing
}

// ceilCount is ceil(x) as a count, at most registry.MaxAutoscaleMax (x
// may be huge: a tiny target). It forgives x the rounding error of the
// division (4.000000001 is 4), but any x above 0 is at least 1.
func ceilCount(x float64) int {
	c := math.Ceil(x - 1e-9)
	switch {
	case c >= registry.MaxAutoscaleMax:
		return registry.MaxAutoscaleMax
	case x > 0 && c < 1:
		return 1
	case c < 1:
		return 0
	}
	return int(c)
}

// missing says why a sample has no value, or "".
func (s Sample) missing() string {
	switch {
	case s.Err != nil:
		return s.Err.Error()
	case math.IsNaN(s.Value) || math.IsInf(s.Value, 0):
		return "no data"
	case s.Value < 0:
		return fmt.Sprintf("negative value %g", s.Value)
	}
	return ""
}

// label names a check in a reason: its metric, and a prometheus check's
// query.
func label(c registry.AutoscaleCheck) string {
	if c.Metric != registry.MetricPrometheus {
		return c.Metric
	}
	q := c.Query
	if len(q) > 60 {
		q = q[:60] + "..."
	}
	return "prometheus " + strconv.Quote(q)
}

// measured says what a check measured: "rps 212.0 per instance",
// "prometheus "sum(...)" 212.0 total, 42.4 per instance".
func measured(c registry.AutoscaleCheck, r Recommendation) string {
	if c.Metric == registry.MetricPrometheus {
		return fmt.Sprintf("%s %.1f total, %.1f per instance", label(c), r.Value, r.PerInstance)
	}
	return fmt.Sprintf("%s %s per instance", label(c), unit(c, strconv.FormatFloat(r.Value, 'f', 1, 64)))
}

// target writes a check's target as the user wrote it: "50", "70%".
func target(c registry.AutoscaleCheck) string {
	return unit(c, strconv.FormatFloat(c.Target, 'g', -1, 64))
}

// unit adds the metric's unit to a number: cpu is in percent.
func unit(c registry.AutoscaleCheck, s string) string {
	if c.Metric == registry.MetricCPU {
		return s + "%"
	}
	return s
}

// change sets the decision to a new count.
func change(d Decision, to int, reason string) Decision {
	d.Desired, d.Changed, d.Reason = to, true, reason
	return d
}

// changed records a change at now, from which the cooldown runs.
func (h History) changed(now time.Time) History {
	h.LastChange = now
	return h
}

// prune drops the records older than the window.
func (h *History) prune(now time.Time, window time.Duration) {
	cut := now.Add(-window)
	i := 0
	for i < len(h.Window) && h.Window[i].At.Before(cut) {
		i++
	}
	h.Window = h.Window[i:]
}

// record adds a recommendation made at now. An empty window after pruning
// means a fresh start or a gap longer than the window: the run of
// evaluations that scale-down relies on starts again.
func (h *History) record(now time.Time, count int, window time.Duration) {
	h.prune(now, window)
	if len(h.Window) == 0 {
		h.Since = now
	}
	// A clock that went back (another leader's) must not let a record
	// leave the window earlier than one it replaces.
	at := now
	if n := len(h.Window); n > 0 && h.Window[n-1].At.After(at) {
		at = h.Window[n-1].At
	}
	for n := len(h.Window); n > 0 && h.Window[n-1].Count <= count; n = len(h.Window) {
		h.Window = h.Window[:n-1]
	}
	h.Window = append(h.Window, Record{At: at, Count: count})
}

// highest is the highest recommendation in the window (0 when empty).
func (h History) highest() int {
	if len(h.Window) == 0 {
		return 0
	}
	return h.Window[0].Count
}

// highestSince is the highest recommendation recorded at or after t (0
// when none): the window keeps, for every such t, the highest after it.
func (h History) highestSince(t time.Time) int {
	for _, r := range h.Window {
		if !r.At.Before(t) {
			return r.Count
		}
	}
	return 0
}

// covers reports whether recorded evaluations span a whole window.
func (h History) covers(now time.Time, window time.Duration) bool {
	return !h.Since.IsZero() && now.Sub(h.Since) >= window
}
