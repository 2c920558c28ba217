package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// parseAutoscale parses autoscale's flags as the command does, and reads
// them.
func parseAutoscale(t *testing.T, args ...string) (int, registry.AutoscalePolicy, error) {
	t.Helper()
	var f autoscaleFlags
	fs := flag.NewFlagSet("autoscale", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	if _, err := parseInterleaved(fs, args); err != nil {
		return 0, registry.AutoscalePolicy{}, usageError{err.Error()}
	}
	return f.policy()
}

func TestAutoscaleFlags(t *testing.T) {
	rps := func(target float64) registry.AutoscaleCheck {
		return registry.AutoscaleCheck{Metric: registry.MetricRPS, Target: target}
	}
	for _, tc := range []struct {
		name string
		args []string
		mode int
		want registry.AutoscalePolicy
	}{
		{"show", nil, autoscaleShow, registry.AutoscalePolicy{}},
		{"off", []string{"-off"}, autoscaleOff, registry.AutoscalePolicy{}},
		// -min is 1 unless given: a min left out would be 0, scale to zero.
		{"the spec's example", []string{"-max", "5", "-rps", "50"}, autoscaleSet,
			registry.AutoscalePolicy{Min: 1, Max: 5, Checks: []registry.AutoscaleCheck{rps(50)}}},
		{"min 0 when asked", []string{"-min", "0", "-max", "3", "-inflight", "2.5"}, autoscaleSet,
			registry.AutoscalePolicy{Min: 0, Max: 3, Checks: []registry.AutoscaleCheck{{Metric: registry.MetricInflight, Target: 2.5}}}},
		{"every check, in a fixed order", []string{"-cpu", "70", "-prometheus-target", "100", "-max", "10", "-rps", "50",
			"-prometheus-query", `sum(rate(http_requests_total{job="hello"}[1m]))`, "-inflight", "4", "-min", "2"}, autoscaleSet,
			registry.AutoscalePolicy{Min: 2, Max: 10, Checks: []registry.AutoscaleCheck{rps(50), {Metric: registry.MetricInflight, Target: 4},
				{Metric: registry.MetricCPU, Target: 70},
				{Metric: registry.MetricPrometheus, Target: 100, Query: `sum(rate(http_requests_total{job="hello"}[1m]))`}}}},
		{"durations and compute", []string{"-max", "5", "-rps", "50", "-interval", "2s", "-window", "1m30s", "-cooldown", "0", "-compute", "site-a"}, autoscaleSet,
			registry.AutoscalePolicy{Min: 1, Max: 5, Checks: []registry.AutoscaleCheck{rps(50)}, EvaluationInterval: registry.Duration(2 * time.Second),
				StabilizationWindow: registry.Duration(90 * time.Second), Compute: "site-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode, p, err := parseAutoscale(t, tc.args...)
			if err != nil || mode != tc.mode || !reflect.DeepEqual(p, tc.want) {
				t.Fatalf("mode %d, policy %+v, %v; want mode %d, %+v", mode, p, err, tc.mode, tc.want)
			}
		})
	}
}

// Every mistake in the flags is a usage error that names the flag.
func TestAutoscaleFlagMistakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"-max", "5"}, "-max without a check: give at least one of -rps"},
		{[]string{"-min", "0", "-window", "1m"}, "-min -window without a check"},
		{[]string{"-rps", "50"}, "-max missing"},
		{[]string{"-max", "0", "-rps", "50"}, "-max 0: want at least 1"},
		{[]string{"-max", "2000000", "-rps", "50"}, "-max 2000000: at most 1000000"},
		{[]string{"-min", "-1", "-max", "5", "-rps", "50"}, "-min -1: want 0 or more"},
		{[]string{"-min", "6", "-max", "5", "-rps", "50"}, "-min 6 is above -max 5"},
		{[]string{"-max", "5", "-rps", "0"}, "-rps 0: want a number above 0"},
		{[]string{"-max", "5", "-cpu", "-70"}, "-cpu -70: want a number above 0"},
		{[]string{"-max", "5", "-inflight", "NaN"}, "-inflight NaN: want a number above 0"},
		{[]string{"-max", "5", "-rps", "+Inf"}, "-rps +Inf: want a number above 0"},
		{[]string{"-max", "5", "-rps", "fifty"}, `invalid value "fifty" for flag -rps`},
		{[]string{"-max", "5", "-prometheus-query", "up"}, "-prometheus-query needs -prometheus-target"},
		{[]string{"-max", "5", "-prometheus-target", "5"}, "-prometheus-target needs -prometheus-query"},
		{[]string{"-max", "5", "-prometheus-query", " ", "-prometheus-target", "5"}, "-prometheus-query is empty"},
		{[]string{"-max", "5", "-prometheus-query", "up", "-prometheus-target", "0"}, "-prometheus-target 0: want a number above 0"},
		{[]string{"-max", "5", "-prometheus-query", strings.Repeat("x", registry.MaxFieldLen+1), "-prometheus-target", "1"}, "-prometheus-query: longer than"},
		{[]string{"-max", "5", "-rps", "50", "-interval", "-5s"}, "-interval -5s: want a positive duration"},
		{[]string{"-max", "5", "-rps", "50", "-cooldown", "25h"}, "-cooldown 25h: at most 24h"},
		{[]string{"-max", "5", "-rps", "50", "-window", "often"}, `invalid value "often" for flag -window`},
		{[]string{"-max", "5", "-rps", "50", "-compute", "Site A"}, "-compute: invalid compute name"},
		{[]string{"-off", "-max", "5"}, "-off takes no other option (got -max)"},
		{[]string{"-off", "-rps", "5", "-min", "0"}, "-off takes no other option (got -rps -min)"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, p, err := parseAutoscale(t, tc.args...)
			if ue, ok := errors.AsType[usageError](err); !ok || !strings.Contains(ue.msg, tc.says) || strings.Contains(ue.msg, "\n") {
				t.Fatalf("policy %+v, error %v; want a usage error, one line, saying %q", p, err, tc.says)
			}
		})
	}
}

// Through Run: usage errors exit 2 with one line, before the CLI joins the
// network (no PSK is given here).
func TestAutoscaleCommandRefusesBadFlagsBeforeConnecting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"autoscale"}, ExitUsage, "want 1 argument(s): <service-name>"},
		{[]string{"autoscale", "a", "b"}, ExitUsage, "want 1 argument(s)"},
		{[]string{"autoscale", "hello", "-max", "5"}, ExitUsage, "without a check"},
		{[]string{"autoscale", "hello", "-rps", "50", "-max", "5", "-min", "9"}, ExitUsage, "-min 9 is above -max 5"},
		{[]string{"autoscale", "hello", "-off", "-rps", "5"}, ExitUsage, "-off takes no other option"},
		{[]string{"autoscale", "hello", "-rps", "x"}, ExitUsage, `invalid value "x" for flag -rps`},
		{[]string{"autoscale", "Hello World", "-max", "5", "-rps", "50"}, ExitFailure, "service name"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), tc.args, Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
			last := lastLine(stderr.String())
			if code != tc.code || !strings.HasPrefix(last, "registry-cli: ") || !strings.Contains(last, tc.says) {
				t.Fatalf("exit %d, want %d; stderr %q: want its last line to say %q", code, tc.code, stderr.String(), tc.says)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// decisionAt is the time of the decisions shown, an hour before now.
var decisionAt = now.Add(-time.Hour)

func exampleAutoscale() registry.AutoscaleState {
	return registry.AutoscaleState{
		Service: "hello",
		Policy: registry.AutoscalePolicy{Min: 1, Max: 5, Compute: "physarum",
			Checks: []registry.AutoscaleCheck{{Metric: registry.MetricRPS, Target: 50}, {Metric: registry.MetricCPU, Target: 70.5},
				{Metric: registry.MetricPrometheus, Target: 100, Query: "sum(rate(http_requests_total{job=\"hello\"}[1m]))"}},
			EvaluationInterval: registry.Duration(10 * time.Second), StabilizationWindow: registry.Duration(5 * time.Minute),
			Cooldown: registry.Duration(90 * time.Second)},
		SetBy: "peer " + peerID, SetAt: now.Add(-3 * time.Minute),
		Last: &registry.AutoscaleDecision{At: decisionAt, Current: 1, Desired: 4, Changed: true,
			Reason: "rps 200.0 per instance > target 50 (tolerance 10%) wants 4, cpu 12.0% per instance < target 70.5% (tolerance 10%) wants 1: 1 → 4"},
	}
}

func TestAutoscaleOutput(t *testing.T) {
	st := exampleAutoscale()
	var b bytes.Buffer
	if err := writeAutoscale(&b, st, now, false); err != nil {
		t.Fatal(err)
	}
	policy := `hello: autoscale min 1 max 5 on physarum: rps 50 per instance, cpu 70.5% per instance, prometheus "sum(rate(http_requests_total{job=\"hello\"}[1m]))" 100 per instance
  every 10s, scale-down window 5m, cooldown 1m30s; set by peer 12D3KooW…6JsBn1 3m0s ago
`
	if b.String() != policy {
		t.Errorf("set:\n%s\nwant:\n%s", b.String(), policy)
	}
	b.Reset()
	if err := writeAutoscale(&b, st, now, true); err != nil {
		t.Fatal(err)
	}
	shown := policy + "  last decision " + decisionAt.Local().Format(time.TimeOnly) + " (1h0m0s ago): " + st.Last.Reason + "\n"
	if b.String() != shown {
		t.Errorf("show:\n%s\nwant:\n%s", b.String(), shown)
	}

	// Defaults filled in for a policy that leaves them out; a decision of
	// another day has its date; none yet says so.
	p := registry.AutoscalePolicy{Min: 0, Max: 3, Checks: []registry.AutoscaleCheck{{Metric: registry.MetricInflight, Target: 4}}}
	if got := autoscaleTiming(p); got != "every 10s, scale-down window 5m, cooldown 30s" {
		t.Errorf("timing of defaults: %q", got)
	}
	if got := autoscaleSummary(p); got != "min 0 max 3 on physarum: inflight 4 per instance" {
		t.Errorf("summary: %q", got)
	}
	old := now.Add(-48 * time.Hour)
	if got, want := lastDecision(&registry.AutoscaleDecision{At: old, Reason: "no change: rps has no value (no instance reports load)"}, now),
		"last decision "+old.Local().Format(time.DateTime)+" (48h0m0s ago): no change: rps has no value (no instance reports load)"; got != want {
		t.Errorf("old decision: %q, want %q", got, want)
	}
	if got := lastDecision(nil, now); got != "last decision: none yet" {
		t.Errorf("no decision: %q", got)
	}
	for d, want := range map[time.Duration]string{time.Hour: "1h", 90 * time.Minute: "1h30m", 5 * time.Minute: "5m", 1500 * time.Millisecond: "1.5s", 24 * time.Hour: "24h"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// status shows the policy and the last decision under the summary line.
func TestStatusTableWithAutoscale(t *testing.T) {
	a := exampleAutoscale()
	a.Policy.Checks = a.Policy.Checks[:1]
	a.Last.Reason = "rps 200.0 per instance > target 50 (tolerance 10%): 1 → 4"
	st := registry.ServiceStatus{Service: "hello", RunningResources: 4, Desired: 4, Autoscale: &a,
		Computes: map[string]registry.ComputeStatus{"physarum": {Desired: 4, Running: 4, SetBy: "autoscale", SetAt: decisionAt}}}
	var b bytes.Buffer
	if err := writeStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	want := `hello: 4/4 running (desired 4), 0 starting, 0 failed, 0 on demand
autoscale: min 1 max 5 on physarum: rps 50 per instance; every 10s, scale-down window 5m, cooldown 1m30s
last decision ` + decisionAt.Local().Format(time.TimeOnly) + ` (1h0m0s ago): rps 200.0 per instance > target 50 (tolerance 10%): 1 → 4

COMPUTE   DESIRED  RUNNING  STARTING  FAILED  SET BY     CHANGED     NOTE
physarum  4        4        0         0       autoscale  1h0m0s ago  -

no instances
`
	if got := b.String(); got != want {
		t.Errorf("status:\n%s\nwant:\n%s", got, want)
	}
}
