package registry

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func rpsPolicy(lo, hi int, target float64) AutoscalePolicy {
	return AutoscalePolicy{Min: lo, Max: hi, Checks: []AutoscaleCheck{{Metric: MetricRPS, Target: target}}}
}

func TestAutoscalePolicyValidate(t *testing.T) {
	prom := AutoscaleCheck{Metric: MetricPrometheus, Target: 100, Query: `sum(rate(http_requests_total{job="web"}[1m]))`}
	with := func(f func(*AutoscalePolicy)) AutoscalePolicy {
		p := rpsPolicy(1, 5, 50)
		f(&p)
		return p
	}
	for _, tc := range []struct {
		name   string
		p      AutoscalePolicy
		field  string // "" = valid
		saying string // and the message says this
	}{
		{"minimal", rpsPolicy(1, 5, 50), "", ""},
		{"min 0", rpsPolicy(0, 5, 50), "", ""},
		{"min equals max", rpsPolicy(3, 3, 50), "", ""},
		{"every metric", with(func(p *AutoscalePolicy) {
			p.Checks = []AutoscaleCheck{{Metric: MetricRPS, Target: 50}, {Metric: MetricInflight, Target: 4}, {Metric: MetricCPU, Target: 70}, prom, prom}
		}), "", ""},
		{"durations set", with(func(p *AutoscalePolicy) {
			p.EvaluationInterval, p.StabilizationWindow, p.Cooldown = Duration(time.Second), Duration(time.Minute), Duration(time.Millisecond)
		}), "", ""},
		{"fractional target", rpsPolicy(1, 5, 0.5), "", ""},

		{"negative min", rpsPolicy(-1, 5, 50), "min", "negative"},
		{"max 0", rpsPolicy(0, 0, 50), "max", "at least 1"},
		{"max too large", rpsPolicy(1, MaxAutoscaleMax+1, 50), "max", "at most"},
		{"min above max", rpsPolicy(5, 2, 50), "min", "min 5 > max 2"},
		{"no checks", AutoscalePolicy{Min: 1, Max: 5}, "checks", "none"},
		{"too many checks", with(func(p *AutoscalePolicy) {
			for range MaxAutoscaleChecks {
				p.Checks = append(p.Checks, prom)
			}
		}), "checks", "at most"},
		{"unknown metric", with(func(p *AutoscalePolicy) { p.Checks[0].Metric = "qps" }), "checks[0].metric", `"qps"`},
		{"no metric", with(func(p *AutoscalePolicy) { p.Checks[0].Metric = "" }), "checks[0].metric", "missing"},
		{"negative target", rpsPolicy(1, 5, -50), "checks[0].target", "-50"},
		{"zero target", rpsPolicy(1, 5, 0), "checks[0].target", "above 0"},
		{"NaN target", rpsPolicy(1, 5, math.NaN()), "checks[0].target", "above 0"},
		{"infinite target", rpsPolicy(1, 5, math.Inf(1)), "checks[0].target", "above 0"},
		{"prometheus without query", with(func(p *AutoscalePolicy) {
			p.Checks = []AutoscaleCheck{{Metric: MetricPrometheus, Target: 10}}
		}), "checks[0].query", "missing"},
		{"query on rps", with(func(p *AutoscalePolicy) { p.Checks[0].Query = "up" }), "checks[0].query", "only a prometheus check"},
		{"query too long", with(func(p *AutoscalePolicy) {
			p.Checks = []AutoscaleCheck{{Metric: MetricPrometheus, Target: 10, Query: strings.Repeat("x", MaxFieldLen+1)}}
		}), "checks[0].query", "longer"},
		{"metric twice", with(func(p *AutoscalePolicy) {
			p.Checks = append(p.Checks, AutoscaleCheck{Metric: MetricCPU, Target: 70}, AutoscaleCheck{Metric: MetricRPS, Target: 20})
		}), "checks[2].metric", "checks[0] already"},
		{"negative interval", with(func(p *AutoscalePolicy) { p.EvaluationInterval = Duration(-time.Second) }), "evaluation_interval", "-1s"},
		{"negative window", with(func(p *AutoscalePolicy) { p.StabilizationWindow = -1 }), "stabilization_window", "positive"},
		{"negative cooldown", with(func(p *AutoscalePolicy) { p.Cooldown = Duration(-time.Minute) }), "cooldown", "leave it out for 30s"},
		{"window too long", with(func(p *AutoscalePolicy) { p.StabilizationWindow = Duration(25 * time.Hour) }), "stabilization_window", "at most 24h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want an ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "invalid "+tc.field+": ") || !strings.Contains(err.Error(), tc.saying) {
				t.Fatalf("error %q, want one naming %s and saying %q", err, tc.field, tc.saying)
			}
		})
	}
}

func TestAutoscalePolicyWithDefaults(t *testing.T) {
	got := rpsPolicy(1, 5, 50).WithDefaults()
	if got.EvaluationInterval != Duration(10*time.Second) || got.StabilizationWindow != Duration(5*time.Minute) || got.Cooldown != Duration(30*time.Second) {
		t.Fatalf("defaults %s %s %s, want 10s 5m0s 30s", got.EvaluationInterval, got.StabilizationWindow, got.Cooldown)
	}
	set := rpsPolicy(1, 5, 50)
	set.EvaluationInterval, set.StabilizationWindow, set.Cooldown = Duration(time.Second), Duration(time.Minute), Duration(time.Millisecond)
	if got := set.WithDefaults(); !reflect.DeepEqual(got, set) {
		t.Fatalf("WithDefaults changed set durations: %+v", got)
	}
}

func TestAutoscalePolicyJSON(t *testing.T) {
	// The SPEC's example body, as a user writes it.
	const body = `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}, {"metric": "prometheus", "target": 100, "query": "sum(rate(x[1m]))"}],
		"evaluation_interval": "10s", "stabilization_window": "5m", "cooldown": "1m30s"}`
	var p AutoscalePolicy
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	want := AutoscalePolicy{
		Min: 1, Max: 5,
		Checks:             []AutoscaleCheck{{Metric: "rps", Target: 50}, {Metric: "prometheus", Target: 100, Query: "sum(rate(x[1m]))"}},
		EvaluationInterval: Duration(10 * time.Second), StabilizationWindow: Duration(5 * time.Minute), Cooldown: Duration(90 * time.Second),
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("decoded %+v, want %+v", p, want)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"min":1,"max":5,"checks":[{"metric":"rps","target":50},{"metric":"prometheus","target":100,"query":"sum(rate(x[1m]))"}],"evaluation_interval":"10s","stabilization_window":"5m0s","cooldown":"1m30s"}`
	if string(b) != wantJSON {
		t.Fatalf("encoded\n%s\nwant\n%s", b, wantJSON)
	}
	var again AutoscalePolicy
	if err := json.Unmarshal(b, &again); err != nil || !reflect.DeepEqual(again, p) {
		t.Fatalf("round trip: %+v, %v", again, err)
	}

	// Left-out durations stay out, and null leaves them unset.
	b, err = json.Marshal(rpsPolicy(0, 2, 5))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "interval") || strings.Contains(string(b), "cooldown") || strings.Contains(string(b), "window") {
		t.Fatalf("unset durations encoded: %s", b)
	}
	var n AutoscalePolicy
	if err := json.Unmarshal([]byte(`{"max":2,"checks":[],"cooldown":null}`), &n); err != nil || n.Cooldown != 0 {
		t.Fatalf("null cooldown: %v, %v", n.Cooldown, err)
	}
}

func TestDurationJSONErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		body, field, saying string
	}{
		{`{"cooldown": "10"}`, "cooldown", `"10"`},
		{`{"evaluation_interval": 10}`, "evaluation_interval", "number 10"},
		{`{"stabilization_window": "five minutes"}`, "stabilization_window", "5m"},
		{`{"cooldown": {}}`, "cooldown", "object"},
		{`{"cooldown": true}`, "cooldown", "bool"},
	} {
		var p AutoscalePolicy
		err := json.Unmarshal([]byte(tc.body), &p)
		te, ok := errors.AsType[*json.UnmarshalTypeError](err)
		if !ok || te.Field != tc.field || !strings.Contains(err.Error(), tc.saying) {
			t.Errorf("%s: error %v, want a type error on %s saying %q", tc.body, err, tc.field, tc.saying)
		}
	}
}

// FuzzDecodeAutoscalePolicy decodes a policy as a door would and checks
// that whatever Validate accepts keeps the promised invariants, and
// survives a round trip.
func FuzzDecodeAutoscalePolicy(f *testing.F) {
	for _, s := range []string{
		`{"min":1,"max":5,"checks":[{"metric":"rps","target":50}]}`,
		`{"min":0,"max":1,"checks":[{"metric":"prometheus","target":1,"query":"up"}],"cooldown":"1ms"}`,
		`{"min":5,"max":2,"checks":[{"metric":"rps","target":50}]}`,
		`{"min":1,"max":5,"checks":[{"metric":"cpu","target":-70}]}`,
		`{"max":5,"checks":[{"metric":"inflight","target":4}],"evaluation_interval":"-1s"}`,
		`{"max":5,"checks":[{"metric":"rps","target":50}],"stabilization_window":"300"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p AutoscalePolicy
		if err := json.Unmarshal(b, &p); err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if p.Min < 0 || p.Min > p.Max || p.Max < 1 || p.Max > MaxAutoscaleMax {
			t.Fatalf("accepted min %d max %d", p.Min, p.Max)
		}
		if len(p.Checks) == 0 || len(p.Checks) > MaxAutoscaleChecks {
			t.Fatalf("accepted %d checks", len(p.Checks))
		}
		for _, c := range p.Checks {
			if !(c.Target > 0) || math.IsInf(c.Target, 0) || (c.Metric == MetricPrometheus) != (c.Query != "") {
				t.Fatalf("accepted check %+v", c)
			}
		}
		d := p.WithDefaults()
		for _, v := range []Duration{d.EvaluationInterval, d.StabilizationWindow, d.Cooldown} {
			if v <= 0 || time.Duration(v) > MaxAutoscaleDuration {
				t.Fatalf("accepted duration %s", v)
			}
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("defaults of a valid policy invalid: %v", err)
		}
		enc, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var again AutoscalePolicy
		if err := json.Unmarshal(enc, &again); err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip of %s: %+v, %v", enc, again, err)
		}
	})
}
