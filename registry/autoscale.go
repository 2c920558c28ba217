package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// Autoscaling (SPEC.md section 12): a policy per service that the leader's
// reconciler evaluates every evaluation_interval to set the service's
// desired count between min and max. The decision itself is
// registry-service/control/autoscale's Decide; these are the shapes every
// door and registry-cli agree on:
//
//	{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}],
//	 "evaluation_interval": "10s", "stabilization_window": "5m", "cooldown": "30s"}

// The metrics an AutoscaleCheck may watch.
const (
	// MetricRPS is requests per second per instance, as the instances'
	// proxies count them.
	MetricRPS = "rps"
	// MetricInflight is requests in flight per instance.
	MetricInflight = "inflight"
	// MetricCPU is CPU use per instance, in percent of one core.
	MetricCPU = "cpu"
	// MetricPrometheus is the one number a Prometheus query returns,
	// taken as the service's total: the target is per instance, so the
	// count follows value / target (see autoscale.Decide).
	MetricPrometheus = "prometheus"
)

// Defaults for an AutoscalePolicy's durations, which WithDefaults fills in
// where a policy leaves them out (or sets them to 0).
const (
	// DefaultEvaluationInterval is how often the policy is evaluated
	// (Kubernetes' HPA syncs every 15 s).
	DefaultEvaluationInterval = 10 * time.Second
	// DefaultStabilizationWindow is how long recommendations must want
	// fewer instances before a scale-down (the HPA's default window, 5 min).
	DefaultStabilizationWindow = 5 * time.Minute
	// DefaultCooldown is how long the count stays put after a change: three
	// default evaluations, time enough for new instances to start and
	// their proxies to report load.
	DefaultCooldown = 30 * time.Second
)

// Limits on what an AutoscalePolicy may say.
const (
	// MaxAutoscaleMax bounds max; registry-service's -max-scale applies
	// on top of it.
	MaxAutoscaleMax = 1000000
	// MaxAutoscaleChecks bounds the number of checks of a policy.
	MaxAutoscaleChecks = 16
	// MaxAutoscaleDuration bounds each of a policy's durations.
	MaxAutoscaleDuration = 24 * time.Hour
)

// AutoscalePolicy is how one service scales with its load.
type AutoscalePolicy struct {
	// Min and Max bound the desired count. Min may be 0: the service then
	// goes to zero after a stabilization window without load, and the
	// proxies' on-demand start wakes it. Min left out is 0.
	Min int `json:"min"`
	Max int `json:"max"`
	// Checks are what the count follows; with several, the one that wants
	// the most instances wins.
	Checks []AutoscaleCheck `json:"checks"`
	// EvaluationInterval is how often the policy is evaluated (0:
	// DefaultEvaluationInterval).
	EvaluationInterval Duration `json:"evaluation_interval,omitzero"`
	// StabilizationWindow is how long every recommendation must want
	// fewer instances before a scale-down, which then goes to the highest
	// recommendation of the window's second half (0:
	// DefaultStabilizationWindow).
	StabilizationWindow Duration `json:"stabilization_window,omitzero"`
	// Cooldown is how long the count stays put after a change, in either
	// direction (0: DefaultCooldown).
	Cooldown Duration `json:"cooldown,omitzero"`
	// Compute is the compute whose desired count the policy sets (""
	// means ComputePhysarum, the whole network).
	Compute string `json:"compute,omitempty"`
}

// AutoscaleCheck is one metric with its target value per instance.
type AutoscaleCheck struct {
	// Metric is one of MetricRPS, MetricInflight, MetricCPU and
	// MetricPrometheus.
	Metric string `json:"metric"`
	// Target is the value per instance the count aims at: requests per
	// second, requests in flight, or CPU percent.
	Target float64 `json:"target"`
	// Query is the Prometheus query of a MetricPrometheus check, which
	// must come to one number: the service's total.
	Query string `json:"query,omitempty"`
}

// WithDefaults returns the policy with its left-out durations set to the
// defaults.
func (p AutoscalePolicy) WithDefaults() AutoscalePolicy {
	if p.EvaluationInterval == 0 {
		p.EvaluationInterval = Duration(DefaultEvaluationInterval)
	}
	if p.StabilizationWindow == 0 {
		p.StabilizationWindow = Duration(DefaultStabilizationWindow)
	}
	if p.Cooldown == 0 {
		p.Cooldown = Duration(DefaultCooldown)
	}
	return p
}

// Validate checks a policy; each failure wraps ErrInvalid and names the
// field. Durations of 0 are left out (WithDefaults fills them in).
func (p AutoscalePolicy) Validate() error {
	if p.Min < 0 {
		return invalid("min", "%d is negative (0 lets the service go to zero)", p.Min)
	}
	if p.Max < 1 {
		return invalid("max", "%d: want at least 1", p.Max)
	}
	if p.Max > MaxAutoscaleMax {
		return invalid("max", "%d: at most %d", p.Max, MaxAutoscaleMax)
	}
	if p.Min > p.Max {
		return invalid("min", "min %d > max %d", p.Min, p.Max)
	}
	if p.Compute != "" {
		if err := ValidateComputeName(p.Compute); err != nil {
			return err
		}
	}
	if len(p.Checks) == 0 {
		return invalid("checks", `none: give at least one, e.g. {"metric": "rps", "target": 50}`)
	}
	if len(p.Checks) > MaxAutoscaleChecks {
		return invalid("checks", "%d checks (at most %d)", len(p.Checks), MaxAutoscaleChecks)
	}
	seen := map[string]int{}
	for i, c := range p.Checks {
		if err := c.validate(fmt.Sprintf("checks[%d]", i)); err != nil {
			return err
		}
		if j, ok := seen[c.Metric]; ok && c.Metric != MetricPrometheus {
			return invalid(fmt.Sprintf("checks[%d].metric", i), "%s is checks[%d] already: give each metric once", c.Metric, j)
		}
		seen[c.Metric] = i
	}
	for _, d := range []struct {
		field string
		d     Duration
		def   time.Duration
	}{
		{"evaluation_interval", p.EvaluationInterval, DefaultEvaluationInterval},
		{"stabilization_window", p.StabilizationWindow, DefaultStabilizationWindow},
		{"cooldown", p.Cooldown, DefaultCooldown},
	} {
		switch {
		case d.d < 0:
			return invalid(d.field, "%s: want a positive duration such as %q, or leave it out for %s", d.d, "30s", d.def)
		case time.Duration(d.d) > MaxAutoscaleDuration:
			return invalid(d.field, "%s: at most %s", d.d, MaxAutoscaleDuration)
		}
	}
	return nil
}

func (c AutoscaleCheck) validate(field string) error {
	switch c.Metric {
	case MetricRPS, MetricInflight, MetricCPU, MetricPrometheus:
	case "":
		return invalid(field+".metric", "missing: want rps, inflight, cpu or prometheus")
	default:
		return invalid(field+".metric", "%.40q: want rps, inflight, cpu or prometheus", c.Metric)
	}
	if !(c.Target > 0) || math.IsInf(c.Target, 0) {
		return invalid(field+".target", "%g: want a number above 0 (the %s per instance to aim at)", c.Target, c.Metric)
	}
	switch {
	case c.Metric == MetricPrometheus && c.Query == "":
		return invalid(field+".query", "missing: a prometheus check needs a query that comes to one number")
	case c.Metric != MetricPrometheus && c.Query != "":
		return invalid(field+".query", "only a prometheus check takes a query, not %s", c.Metric)
	case len(c.Query) > MaxFieldLen:
		return invalid(field+".query", "longer than %d characters", MaxFieldLen)
	}
	return nil
}

// AutoscaleDecision is the outcome of one evaluation, as an event and status show
// it.
type AutoscaleDecision struct {
	At      time.Time `json:"at"`
	Current int       `json:"current"`
	// Desired is the count to set: Current unless Changed.
	Desired int  `json:"desired"`
	Changed bool `json:"changed"`
	// Reason says why in one sentence that names the metric values:
	// "rps 212.0 per instance > target 50 (tolerance 10%): 1 → 5".
	Reason string `json:"reason"`
	// Recommendations has one entry per check of the policy, in order.
	Recommendations []AutoscaleRecommendation `json:"recommendations,omitempty"`
}

// AutoscaleRecommendation is what one check measured and the count it wants.
type AutoscaleRecommendation struct {
	Metric string  `json:"metric"`
	Query  string  `json:"query,omitempty"`
	Target float64 `json:"target"`
	// Value is the sample as measured (for prometheus, the total) and
	// PerInstance what was compared with the target; both are 0 when
	// Missing.
	Value       float64 `json:"value"`
	PerInstance float64 `json:"per_instance"`
	// Count is the count the check wants, before the policy's bounds
	// and step limit (at most MaxAutoscaleMax).
	Count int `json:"count"`
	// Missing says why the check has no value.
	Missing string `json:"missing,omitempty"`
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("10s", "5m", "1h30m"), as every duration of the HTTP API is.
type Duration time.Duration

// String formats the duration as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string: "5m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string; null leaves d as it is. It
// refuses anything else (a bare number is ambiguous: seconds or
// nanoseconds?) with a *json.UnmarshalTypeError, to which the decoder adds
// the field's name.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: jsonKind(b) + " " + cutText(string(b)) + ` (want a duration such as "30s")`, Type: reflect.TypeFor[Duration]()}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "string " + strconv.Quote(cutText(s)) + ` (want a duration such as "30s" or "5m")`, Type: reflect.TypeFor[Duration]()}
	}
	*d = Duration(v)
	return nil
}

// jsonKind names the JSON value b starts with.
func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	}
	return "number"
}

// cutText shortens what an error message repeats of the input.
func cutText(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Autoscale operations of the registry protocol.
const (
	OpAutoscaleSet    = "autoscale.set"
	OpAutoscaleGet    = "autoscale.get"
	OpAutoscaleDelete = "autoscale.delete"
)

// AutoscaleState is a service's autoscaling as the API and status show it:
// the policy, who set it, and the last decision.
type AutoscaleState struct {
	Service string          `json:"service"`
	Policy  AutoscalePolicy `json:"policy"`
	SetBy   string          `json:"set_by,omitempty"`
	SetAt   time.Time       `json:"set_at,omitzero"`
	// Last is the last decision that changed the count or its reason
	// (nil before the first evaluation).
	Last *AutoscaleDecision `json:"last_decision,omitempty"`
}

// Autoscalers set, read and remove autoscaling policies; one
// implementation (registry-service's Control) behind every door.
type Autoscalers interface {
	// SetAutoscale turns autoscaling on for service, or changes its
	// policy; the policy is checked and its defaults filled in.
	SetAutoscale(ctx context.Context, service string, p AutoscalePolicy) (AutoscaleState, error)
	// GetAutoscale reads service's policy and last decision (not_found
	// when it has none).
	GetAutoscale(ctx context.Context, service string) (AutoscaleState, error)
	// DeleteAutoscale turns autoscaling off; the desired count stays as
	// it is.
	DeleteAutoscale(ctx context.Context, service string) (string, error)
}

var _ Autoscalers = (*Client)(nil)

// SetAutoscale sets a policy through the registry protocol.
func (c *Client) SetAutoscale(ctx context.Context, service string, p AutoscalePolicy) (AutoscaleState, error) {
	resp, err := c.call(ctx, Request{Op: OpAutoscaleSet, Name: service, Autoscale: &p})
	if err != nil {
		return AutoscaleState{}, fmt.Errorf("autoscale %s: %w", service, err)
	}
	if resp.Autoscale == nil {
		return AutoscaleState{}, fmt.Errorf("autoscale %s: empty answer", service)
	}
	return *resp.Autoscale, nil
}

// GetAutoscale reads a policy through the registry protocol.
func (c *Client) GetAutoscale(ctx context.Context, service string) (AutoscaleState, error) {
	resp, err := c.call(ctx, Request{Op: OpAutoscaleGet, Name: service})
	if err != nil {
		return AutoscaleState{}, fmt.Errorf("autoscale of %s: %w", service, err)
	}
	if resp.Autoscale == nil {
		return AutoscaleState{}, fmt.Errorf("autoscale of %s: empty answer", service)
	}
	return *resp.Autoscale, nil
}

// DeleteAutoscale turns autoscaling off through the registry protocol.
func (c *Client) DeleteAutoscale(ctx context.Context, service string) (string, error) {
	resp, err := c.call(ctx, Request{Op: OpAutoscaleDelete, Name: service})
	if err != nil {
		return "", fmt.Errorf("autoscale off for %s: %w", service, err)
	}
	return resp.Message, nil
}
