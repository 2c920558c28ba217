package autoscale

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func policy(lo, hi int, checks ...registry.AutoscaleCheck) registry.AutoscalePolicy {
	return registry.AutoscalePolicy{Min: lo, Max: hi, Checks: checks}
}

func rps(target float64) registry.AutoscaleCheck {
	return registry.AutoscaleCheck{Metric: registry.MetricRPS, Target: target}
}

func values(v ...float64) []Sample {
	s := make([]Sample, len(v))
	for i := range v {
		s[i] = Sample{Value: v[i]}
	}
	return s
}

// settled is the History of a service evaluated for an hour, whose last
// recommendation, 10 s ago, was count, and that last changed long ago.
func settled(count int) History {
	return History{Since: t0.Add(-time.Hour), Window: []Record{{At: t0.Add(-10 * time.Second), Count: count}}, LastChange: t0.Add(-time.Hour)}
}

func TestDecide(t *testing.T) {
	prom := func(target float64) registry.AutoscaleCheck {
		return registry.AutoscaleCheck{Metric: registry.MetricPrometheus, Target: target, Query: "sum(rate(http_requests_total[1m]))"}
	}
	cpu := registry.AutoscaleCheck{Metric: registry.MetricCPU, Target: 30}
	inflight := registry.AutoscaleCheck{Metric: registry.MetricInflight, Target: 4}
	for _, tc := range []struct {
		name    string
		p       registry.AutoscalePolicy
		current int
		samples []Sample
		h       History
		want    int
		reason  string // the reason contains this
	}{
		// new = ceil(current × metric / target).
		{"steady 200 rps at target 50 from 1", policy(1, 5, rps(50)), 1, values(200), History{}, 4,
			"rps 200.0 per instance > target 50 (tolerance 10%): 1 → 4"},
		{"the issue's example", policy(1, 5, rps(50)), 1, values(212), History{}, 5,
			"rps 212.0 per instance > target 50 (tolerance 10%): 1 → 5"},
		{"a little over rounds up", policy(1, 10, rps(50)), 4, values(56), History{}, 5, "4 → 5"},

		// The tolerance band: |metric/target − 1| ≤ 10% changes nothing.
		{"at the target", policy(1, 10, rps(50)), 4, values(50), settled(0), 4, "rps 50.0 per instance within 10% of target 50: stays at 4"},
		{"10% over", policy(1, 10, rps(50)), 4, values(55), settled(0), 4, "within 10%"},
		{"just over 10% over", policy(1, 10, rps(50)), 4, values(55.6), settled(0), 5, "> target 50"},
		{"10% under", policy(1, 20, rps(50)), 10, values(45), settled(0), 10, "within 10%"},
		{"just over 10% under", policy(1, 20, rps(50)), 10, values(44.5), settled(0), 9, "< target 50"},

		// Scale-out: at most max(2×current, current+4) per step.
		{"+4 from 1", policy(1, 100, rps(50)), 1, values(1000), History{}, 5, "1 → 5, at most max(2×1, 1+4) = 5 per step (wanted 20)"},
		{"+4 from 3", policy(1, 100, rps(50)), 3, values(500), History{}, 7, "at most max(2×3, 3+4) = 7 per step (wanted 30)"},
		{"2× from 10", policy(1, 100, rps(50)), 10, values(200), History{}, 20, "10 → 20, at most max(2×10, 10+4) = 20 per step (wanted 40)"},
		{"under the cap", policy(1, 100, rps(50)), 10, values(90), History{}, 18, "10 → 18"},
		{"+4 from 0", policy(0, 100, rps(50)), 0, values(1000), History{}, 4, "0 → 4"},

		// Clamp to [min, max].
		{"capped at max", policy(1, 5, rps(50)), 1, values(1000), History{}, 5, "1 → 5, capped at max 5 (wanted 20)"},
		{"at max stays", policy(1, 5, rps(50)), 5, values(1000), History{}, 5, "stays at max 5"},
		{"scale-down stops at min", policy(2, 10, rps(50)), 6, values(0), settled(0), 2, "6 → 2, the policy's min"},
		{"at min stays", policy(2, 10, rps(50)), 2, values(0), settled(0), 2, "stays at min 2"},
		{"below min goes to min", policy(2, 10, rps(50)), 0, values(0), History{}, 2, "0 → 2: below the policy's min 2"},
		{"above max goes to max", policy(1, 5, rps(50)), 8, values(50), History{}, 5, "8 → 5: above the policy's max 5"},
		{"bounds even without metrics", policy(1, 5, rps(50)), 8, values(math.NaN()), History{}, 5, "above the policy's max 5"},
		{"bounds even in cooldown", policy(1, 5, rps(50)), 8, values(50), History{LastChange: t0}, 5, "above the policy's max 5"},

		// Scale-down: the highest recommendation in the window.
		{"down to the highest in the window", policy(1, 10, rps(50)), 8, values(10), settled(3), 3, "8 → 3, the highest recommendation in the last 2m30s (all of the last 5m0s were below 8)"},
		{"down to what the window's second half wants, past the fall in its first", policy(1, 10, rps(50)), 8, values(10),
			History{Since: t0.Add(-time.Hour), Window: []Record{{At: t0.Add(-4 * time.Minute), Count: 6}, {At: t0.Add(-3 * time.Minute), Count: 4}, {At: t0.Add(-time.Minute), Count: 2}}}, 2, "8 → 2"},
		{"held by a higher recommendation", policy(1, 10, rps(50)), 8, values(10), settled(8), 8, "stays at 8: the highest recommendation in the last 5m0s is 8"},
		{"a recommendation that left the window", policy(1, 10, rps(50)), 8, values(10),
			History{Since: t0.Add(-time.Hour), Window: []Record{{At: t0.Add(-6 * time.Minute), Count: 8}, {At: t0.Add(-time.Minute), Count: 3}}}, 3, "8 → 3"},
		{"no scale-down before a whole window is recorded", policy(1, 10, rps(50)), 8, values(0), History{}, 8, "scale-down waits until 5m0s of recommendations are recorded (5m0s to go)"},
		{"nor after a gap longer than the window", policy(1, 10, rps(50)), 8, values(0),
			History{Since: t0.Add(-time.Hour), Window: []Record{{At: t0.Add(-6 * time.Minute), Count: 1}}}, 8, "scale-down waits"},
		{"any load wants one instance", policy(0, 10, rps(50)), 3, values(0.001), settled(0), 1, "3 → 1"},
		{"min 0 reaches 0", policy(0, 10, rps(50)), 3, values(0), settled(0), 0, "3 → 0"},

		// From zero, load counts from one instance.
		{"demand wakes from 0", policy(0, 10, rps(50)), 0, values(30), History{}, 1,
			"rps 30.0 per instance at 0 instances, target 50: demand wants at least 1: 0 → 1"},
		{"heavy demand from 0", policy(0, 10, rps(50)), 0, values(120), History{}, 3, "0 → 3"},
		{"no demand at 0", policy(0, 10, rps(50)), 0, values(0), History{}, 0, "stays at 0"},

		// Cooldown after a change, in both directions.
		{"cooldown holds a scale-out", policy(1, 10, rps(50)), 2, values(100), History{LastChange: t0.Add(-10 * time.Second)}, 2,
			"would go 2 → 4, but the cooldown holds it for another 20s (30s after the change)"},
		{"cooldown holds a scale-down", policy(1, 10, rps(50)), 8, values(0), History{Since: t0.Add(-time.Hour), Window: settled(0).Window, LastChange: t0.Add(-29 * time.Second)}, 8,
			"would go 8 → 1, but the cooldown holds it for another 1s"},
		{"cooldown over", policy(1, 10, rps(50)), 2, values(100), History{LastChange: t0.Add(-30 * time.Second)}, 4, "2 → 4"},
		{"a policy's own cooldown", func() registry.AutoscalePolicy {
			p := policy(1, 10, rps(50))
			p.Cooldown = registry.Duration(2 * time.Minute)
			return p
		}(), 2, values(100), History{LastChange: t0.Add(-time.Minute)}, 2, "another 1m0s (2m0s after the change)"},

		// Several checks: the largest count wins.
		{"rps wins", policy(1, 10, rps(50), cpu, inflight), 1, values(200, 60, 1), History{}, 4,
			"rps 200.0 per instance > target 50 (tolerance 10%) wants 4, cpu 60.0% per instance > target 30% (tolerance 10%) wants 2, inflight 1.0 per instance < target 4 (tolerance 10%) wants 1: 1 → 4"},
		{"cpu wins", policy(1, 10, rps(50), cpu), 2, values(20, 90), History{}, 6, "wants 6: 2 → 6"},
		{"a check in tolerance holds the count up", policy(1, 10, rps(50), cpu), 6, values(5, 31), settled(0), 6, "cpu 31.0% per instance within 10% of target 30% wants 6: stays at 6"},

		// A missing value changes nothing.
		{"no data", policy(1, 10, rps(50)), 2, values(math.NaN()), History{}, 2, "no change: rps has no value (no data)"},
		{"infinite", policy(1, 10, rps(50)), 2, values(math.Inf(1)), History{}, 2, "rps has no value (no data)"},
		{"negative", policy(1, 10, rps(50)), 2, values(-3), History{}, 2, "rps has no value (negative value -3)"},
		{"not measured", policy(1, 10, rps(50), cpu), 2, values(200), History{}, 2, "cpu has no value (not measured)"},
		{"one missing holds back another's scale-out", policy(1, 10, rps(50), cpu), 2, []Sample{{Value: 500}, {Value: math.NaN()}}, History{}, 2, "no change: cpu has no value"},
		{"a failed query", policy(1, 10, prom(50)), 2, []Sample{{Err: errors.New("the query returned 2 series; want one number")}}, History{}, 2,
			`no change: prometheus "sum(rate(http_requests_total[1m]))" has no value (the query returned 2 series; want one number)`},

		// A prometheus value is the service's total.
		{"prometheus total", policy(1, 10, prom(50)), 2, values(200), History{}, 4,
			`prometheus "sum(rate(http_requests_total[1m]))" 200.0 total, 100.0 per instance > target 50 (tolerance 10%): 2 → 4`},
		{"prometheus at target", policy(1, 10, prom(50)), 4, values(200), settled(0), 4, "50.0 per instance within 10%"},
		{"prometheus total divides unevenly", policy(1, 10, prom(50)), 3, values(100), settled(0), 2, "3 → 2"},
		{"prometheus wakes from 0", policy(0, 10, prom(50)), 0, values(30), History{}, 1, "0 → 1"},
		{"prometheus from 0 with more load", policy(0, 10, prom(50)), 0, values(130), History{}, 3, "0 → 3"},

		{"invalid policy", policy(3, 2, rps(50)), 2, values(500), History{}, 2, "no change: the policy is invalid min: min 3 > max 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := Decide(tc.p, tc.current, tc.samples, tc.h, t0)
			if d.Desired != tc.want || d.Changed != (tc.want != tc.current) || d.Current != tc.current {
				t.Errorf("%d → %d (changed %v), want %d: %s", d.Current, d.Desired, d.Changed, tc.want, d.Reason)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q\nwant it to say %q", d.Reason, tc.reason)
			}
		})
	}
}

func TestDecideRecommendations(t *testing.T) {
	p := policy(1, 10, rps(50), registry.AutoscaleCheck{Metric: registry.MetricPrometheus, Target: 10, Query: "q"}, registry.AutoscaleCheck{Metric: registry.MetricCPU, Target: 70})
	d, _ := Decide(p, 2, []Sample{{Value: 75}, {Value: 1e9}, {Err: errors.New("no cpu")}}, History{}, t0)
	want := []Recommendation{
		{Metric: "rps", Target: 50, Value: 75, PerInstance: 75, Count: 3},
		{Metric: "prometheus", Query: "q", Target: 10, Value: 1e9, PerInstance: 5e8, Count: registry.MaxAutoscaleMax},
		{Metric: "cpu", Target: 70, Missing: "no cpu"},
	}
	if !reflect.DeepEqual(d.Recommendations, want) {
		t.Fatalf("recommendations\n%+v\nwant\n%+v", d.Recommendations, want)
	}
	if _, err := json.Marshal(d); err != nil {
		t.Fatalf("a decision must encode as an event: %v", err)
	}
}

// run evaluates p every interval from t0 for total, a duration, with a
// load of load(elapsed) requests per second over the whole service, and
// returns the count after each evaluation and the decisions that changed
// it. The load spreads evenly over the current count; at 0, an on-demand
// instance (which the proxy starts) carries it.
func run(t *testing.T, p registry.AutoscalePolicy, current int, total, interval time.Duration, load func(time.Duration) float64) (counts []int, changes []Decision) {
	t.Helper()
	var h History
	for e := time.Duration(0); e < total; e += interval {
		per := load(e)
		if current > 0 {
			per /= float64(current)
		}
		d, next := Decide(p, current, values(per), h, t0.Add(e))
		if d.Desired < p.Min || d.Desired > p.Max {
			t.Fatalf("at %s: %d outside [%d, %d]: %s", e, d.Desired, p.Min, p.Max, d.Reason)
		}
		if d.Changed {
			changes = append(changes, d)
		}
		if len(next.Window) > p.Max+1 {
			t.Fatalf("at %s: a history of %d records", e, len(next.Window))
		}
		current, h = d.Desired, next
		counts = append(counts, current)
	}
	return counts, changes
}

func steady(rps float64) func(time.Duration) float64 {
	return func(time.Duration) float64 { return rps }
}

// until is rps until d, then nothing.
func until(rps float64, d time.Duration) func(time.Duration) float64 {
	return func(e time.Duration) float64 {
		if e < d {
			return rps
		}
		return 0
	}
}

func TestSteadyLoadScalesOutAndStays(t *testing.T) {
	const interval = 10 * time.Second
	counts, changes := run(t, policy(1, 5, rps(50)), 1, 15*time.Minute, interval, steady(200))
	if counts[0] != 4 && counts[1] != 4 {
		t.Fatalf("counts %v: want 4 within two evaluations", counts[:2])
	}
	if len(changes) != 1 || counts[len(counts)-1] != 4 {
		t.Fatalf("%d changes, ending at %d; want one, to 4: %+v", len(changes), counts[len(counts)-1], changes)
	}
}

func TestHeavyLoadGrowsByCappedStepsAfterEachCooldown(t *testing.T) {
	const interval = 10 * time.Second
	_, changes := run(t, policy(1, 100, rps(50)), 1, 5*time.Minute, interval, steady(1000))
	var got []int
	for i, d := range changes {
		got = append(got, d.Desired)
		if i > 0 && d.At.Sub(changes[i-1].At) < registry.DefaultCooldown {
			t.Errorf("change %d at %s, %s after the one before: inside the cooldown", i, d.At.Sub(t0), d.At.Sub(changes[i-1].At))
		}
	}
	if want := []int{5, 10, 20}; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
}

func TestLoadStopsScalesDownOnceAfterTheWindow(t *testing.T) {
	const interval = 10 * time.Second
	stop := 10 * time.Minute
	counts, changes := run(t, policy(1, 5, rps(50)), 1, 30*time.Minute, interval, until(200, stop))
	if len(changes) != 2 {
		t.Fatalf("%d changes, want 2 (up, then down): %+v", len(changes), changes)
	}
	down := changes[1]
	if down.Current != 4 || down.Desired != 1 {
		t.Fatalf("scale-down %d → %d, want 4 → 1 in one step: %s", down.Current, down.Desired, down.Reason)
	}
	// The last evaluation under load was at stop-interval; its
	// recommendation leaves the window at stop-interval+5m.
	lastLoad := t0.Add(stop - interval)
	if at := down.At; !at.After(lastLoad.Add(registry.DefaultStabilizationWindow)) || at.After(lastLoad.Add(registry.DefaultStabilizationWindow+interval)) {
		t.Fatalf("scale-down at %s, want the first evaluation after %s", at.Sub(t0), lastLoad.Add(registry.DefaultStabilizationWindow).Sub(t0))
	}
	if counts[len(counts)-1] != 1 {
		t.Fatalf("ends at %d, want min 1", counts[len(counts)-1])
	}
}

// When load stops, the proxies' averages fall over a few evaluations:
// scale-down still goes to min in one step, a window after the load.
func TestLoadThatFallsOverSeveralEvaluationsScalesDownInOneStep(t *testing.T) {
	const interval = 10 * time.Second
	stop := 10 * time.Minute
	falling := func(e time.Duration) float64 {
		switch {
		case e < stop:
			return 200
		case e < stop+4*interval:
			return 200 * float64(stop+4*interval-e) / float64(4*interval) // 200, 150, 100, 50
		}
		return 0
	}
	counts, changes := run(t, policy(1, 5, rps(50)), 1, 30*time.Minute, interval, falling)
	if len(changes) != 2 || changes[1].Current != 4 || changes[1].Desired != 1 {
		t.Fatalf("changes %+v: want 1 → 4, then 4 → 1 in one step", changes)
	}
	if at := changes[1].At; at.Before(t0.Add(stop + registry.DefaultStabilizationWindow)) {
		t.Fatalf("scale-down at %s, before a window after the load stopped", at.Sub(t0))
	}
	if counts[len(counts)-1] != 1 {
		t.Fatalf("ends at %d", counts[len(counts)-1])
	}
}

func TestBriefDipDoesNotScaleDown(t *testing.T) {
	const interval = 10 * time.Second
	dip := func(e time.Duration) float64 {
		if e >= 10*time.Minute && e < 14*time.Minute {
			return 0
		}
		return 200
	}
	_, changes := run(t, policy(1, 5, rps(50)), 1, 30*time.Minute, interval, dip)
	if len(changes) != 1 {
		t.Fatalf("%d changes, want only the first scale-out: %+v", len(changes), changes)
	}
}

func TestMinZeroGoesToZeroAndDemandWakesIt(t *testing.T) {
	const interval = 10 * time.Second
	load := func(e time.Duration) float64 {
		switch {
		case e < 5*time.Minute:
			return 100
		case e < 20*time.Minute:
			return 0
		}
		return 30 // a request wakes it
	}
	counts, changes := run(t, policy(0, 5, rps(50)), 1, 25*time.Minute, interval, load)
	var steps []int
	for _, d := range changes {
		steps = append(steps, d.Desired)
	}
	if want := []int{2, 0, 1}; !reflect.DeepEqual(steps, want) {
		t.Fatalf("steps %v, want %v: %+v", steps, want, changes)
	}
	if zero := changes[1].At.Sub(t0); zero <= 5*time.Minute+registry.DefaultStabilizationWindow-interval {
		t.Fatalf("went to zero at %s, before a whole window without load", zero)
	}
	if counts[len(counts)-1] != 1 {
		t.Fatalf("ends at %d, want 1", counts[len(counts)-1])
	}
}

func TestOscillatingLoadDoesNotFlap(t *testing.T) {
	const interval = 10 * time.Second
	for _, tc := range []struct {
		name     string
		low, top float64 // total rps, alternating every 30 s
	}{
		{"narrow, around the target", 180, 240},
		{"wide", 150, 260},
		{"around a scale-out threshold", 200, 230},
	} {
		t.Run(tc.name, func(t *testing.T) {
			osc := func(e time.Duration) float64 {
				if e/(30*time.Second)%2 == 0 {
					return tc.top
				}
				return tc.low
			}
			counts, changes := run(t, policy(1, 10, rps(50)), 4, 40*time.Minute, interval, osc)
			if len(changes) > 1 {
				t.Fatalf("%d changes in 40 minutes of load between %g and %g: %v", len(changes), tc.low, tc.top, counts)
			}
		})
	}
}

func TestDecideLeavesItsInputAlone(t *testing.T) {
	h := History{Since: t0.Add(-time.Hour), Window: []Record{{At: t0.Add(-time.Minute), Count: 9}, {At: t0.Add(-30 * time.Second), Count: 5}}}
	before := History{Since: h.Since, Window: append([]Record(nil), h.Window...)}
	p := policy(1, 10, rps(50))
	d1, h1 := Decide(p, 6, values(300), h, t0)
	d2, h2 := Decide(p, 6, values(300), h, t0)
	if !reflect.DeepEqual(h, before) {
		t.Fatalf("Decide changed its History: %+v", h)
	}
	if !reflect.DeepEqual(d1, d2) || !reflect.DeepEqual(h1, h2) {
		t.Fatalf("the same inputs gave\n%+v %+v\n%+v %+v", d1, h1, d2, h2)
	}
	// 300 rps per instance at 6 wants 36, capped at max 10: it replaces
	// both records, which can no longer be the highest.
	if want := []Record{{At: t0, Count: 10}}; !reflect.DeepEqual(h1.Window, want) {
		t.Fatalf("window %+v, want %+v", h1.Window, want)
	}
}

func TestHistoryPersists(t *testing.T) {
	p := policy(1, 5, rps(50))
	var h History
	current := 1
	for i := range 40 {
		now := t0.Add(time.Duration(i) * 10 * time.Second)
		d, next := Decide(p, current, values(float64(i%7)*30/float64(current)), h, now)
		b, err := json.Marshal(next)
		if err != nil {
			t.Fatal(err)
		}
		var back History
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, next) {
			t.Fatalf("History after %s\n%s\ndecodes as %+v", now.Sub(t0), b, back)
		}
		for j := 1; j < len(back.Window); j++ {
			if back.Window[j].Count >= back.Window[j-1].Count || back.Window[j].At.Before(back.Window[j-1].At) {
				t.Fatalf("window out of order: %+v", back.Window)
			}
		}
		current, h = d.Desired, back
	}
}

func TestClockGoingBackKeepsTheHighest(t *testing.T) {
	p := policy(1, 10, rps(50))
	h := History{Since: t0.Add(-time.Hour), Window: []Record{{At: t0, Count: 8}}}
	// Another leader's clock is a minute behind: its lower or equal
	// recommendation must not make the 8 leave the window sooner.
	_, h = Decide(p, 8, values(50), h, t0.Add(-time.Minute))
	if len(h.Window) != 1 || h.Window[0].Count != 8 || !h.Window[0].At.Equal(t0) {
		t.Fatalf("window %+v, want the 8 kept at %s", h.Window, t0)
	}
	d, _ := Decide(p, 8, values(0), h, t0.Add(4*time.Minute+50*time.Second))
	if d.Changed {
		t.Fatalf("scaled down inside the window: %s", d.Reason)
	}
}

// FuzzDecide checks the invariants of any decision: the count stays in
// [min, max], changes only when it says so, and grows by at most one step.
func FuzzDecide(f *testing.F) {
	f.Add(1, 5, 1, 50.0, 200.0, false, int64(0), int64(0))
	f.Add(0, 10, 0, 1e-300, 1e300, true, int64(3600), int64(1))
	f.Add(2, 3, 9, 1.0, math.NaN(), false, int64(-5), int64(400))
	f.Add(0, 1000000, 999999, 0.5, 1e12, false, int64(1e9), int64(-1e9))
	f.Fuzz(func(t *testing.T, lo, hi, current int, target, value float64, prom bool, sinceAgo, changeAgo int64) {
		c := rps(target)
		if prom {
			c = registry.AutoscaleCheck{Metric: registry.MetricPrometheus, Target: target, Query: "q"}
		}
		p := policy(lo, hi, c)
		h := History{
			Since:      t0.Add(-time.Duration(sinceAgo) * time.Second),
			Window:     []Record{{At: t0.Add(-time.Minute), Count: max(current, 0) / 2}},
			LastChange: t0.Add(-time.Duration(changeAgo) * time.Second),
		}
		d, next := Decide(p, current, values(value), h, t0)
		if d.Changed != (d.Desired != d.Current) || d.Reason == "" {
			t.Fatalf("decision %+v", d)
		}
		if p.Validate() != nil {
			if d.Changed {
				t.Fatalf("an invalid policy changed the count: %+v", d)
			}
			return
		}
		if d.Desired < lo || d.Desired > hi {
			t.Fatalf("%d outside [%d, %d]: %s", d.Desired, lo, hi, d.Reason)
		}
		if d.Current >= lo && d.Desired > d.Current && d.Desired > max(2*d.Current, d.Current+4) {
			t.Fatalf("%d → %d: more than a step", d.Current, d.Desired)
		}
		if len(next.Window) > hi+1 {
			t.Fatalf("a history of %d records", len(next.Window))
		}
	})
}
