package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// Autoscaling (SPEC.md section 12, seed 002): PUT /service/<name>/autoscale
// sets a service's policy and answers its registry.AutoscaleState; GET
// reads it with the last decision (404 when the service has none); DELETE
// turns autoscaling off, leaving the desired count as it is. They are
// served when the Controller is also a registry.Autoscalers
// (registry-service's control) and this is not an allocator's connector
// (NodeScope), which has no policies.

// routeAutoscale is the route key of a service's policy.
const routeAutoscale = "/service/{name}/autoscale"

// autoscaleFields and checkFields name the fields a policy and a check
// take, for the message that refuses another.
const (
	autoscaleFields = "a policy takes min, max, checks, evaluation_interval, stabilization_window, cooldown and compute"
	checkFields     = "a check takes metric, target and query"
)

// addAutoscaleRoutes adds the autoscale route when h's Controller serves
// policies.
func (h *handler) addAutoscaleRoutes() {
	as, ok := h.c.(registry.Autoscalers)
	if !ok || h.o.NodeScope != "" {
		return
	}
	h.routes[routeAutoscale] = map[string]handlerFunc{
		http.MethodGet:    func(q *request) (int, any, error) { return getAutoscale(as, q) },
		http.MethodPut:    func(q *request) (int, any, error) { return putAutoscale(as, q) },
		http.MethodDelete: func(q *request) (int, any, error) { return deleteAutoscale(as, q) },
	}
}

// decodeAutoscale reads a policy: {"min": 1, "max": 5, "checks":
// [{"metric": "rps", "target": 50}], "evaluation_interval": "10s",
// "stabilization_window": "5m", "cooldown": "30s", "compute": "site-a"}.
// min and max are mandatory (a min left out would let the service go to
// zero, which must be asked for: "min": 0); so is one check at least. The
// durations are Go duration strings, left out for their defaults. Unknown
// fields, in the policy or a check, are refused; the result is validated
// (registry.AutoscalePolicy.Validate), each failure naming its field.
func decodeAutoscale(body []byte) (registry.AutoscalePolicy, error) {
	var f struct {
		Min                 *int              `json:"min"`
		Max                 *int              `json:"max"`
		Checks              []json.RawMessage `json:"checks"`
		EvaluationInterval  registry.Duration `json:"evaluation_interval"`
		StabilizationWindow registry.Duration `json:"stabilization_window"`
		Cooldown            registry.Duration `json:"cooldown"`
		Compute             string            `json:"compute"`
	}
	if err := decodeStrict(body, &f, autoscaleFields); err != nil {
		return registry.AutoscalePolicy{}, err
	}
	switch {
	case f.Min == nil:
		return registry.AutoscalePolicy{}, errorf(`invalid min: missing: the fewest instances to keep, e.g. {"min": 1} (0 lets the service go to zero when idle)`)
	case f.Max == nil:
		return registry.AutoscalePolicy{}, errorf(`invalid max: missing: the most instances to run, e.g. {"max": 5}`)
	case len(f.Checks) > registry.MaxAutoscaleChecks:
		return registry.AutoscalePolicy{}, errorf("invalid checks: %d checks (at most %d)", len(f.Checks), registry.MaxAutoscaleChecks)
	}
	p := registry.AutoscalePolicy{
		Min: *f.Min, Max: *f.Max,
		EvaluationInterval: f.EvaluationInterval, StabilizationWindow: f.StabilizationWindow, Cooldown: f.Cooldown,
		Compute: f.Compute,
	}
	for i, raw := range f.Checks {
		c, err := decodeCheck(raw, fmt.Sprintf("checks[%d]", i))
		if err != nil {
			return registry.AutoscalePolicy{}, err
		}
		p.Checks = append(p.Checks, c)
	}
	if err := p.Validate(); err != nil {
		return registry.AutoscalePolicy{}, err
	}
	return p, nil
}

// decodeCheck reads one check of a policy, field being where it stands
// ("checks[0]"), which every message names.
func decodeCheck(raw json.RawMessage, field string) (registry.AutoscaleCheck, error) {
	var c registry.AutoscaleCheck
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		got := "nothing"
		if len(t) > 0 {
			got = kind(t[0])
		}
		return c, errorf(`invalid %s: want an object such as {"metric": "rps", "target": 50}, got %s`, field, got)
	}
	if err := decodeStrict(raw, &c, checkFields); err != nil {
		we, ok := errors.AsType[*wire.Error](err)
		if !ok {
			return c, err
		}
		// decodeStrict names the check's own field ("invalid target: ...")
		// or the body ("invalid body: unknown field ..."): say which check.
		msg := we.Message
		if rest, ok := strings.CutPrefix(msg, "invalid body: "); ok {
			msg = "invalid " + field + ": " + rest
		} else if rest, ok := strings.CutPrefix(msg, "invalid "); ok {
			msg = "invalid " + field + "." + rest
		}
		return c, &wire.Error{Code: we.Code, Message: msg}
	}
	return c, nil
}

func putAutoscale(as registry.Autoscalers, q *request) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	p, err := decodeAutoscale(q.body)
	if err != nil {
		return 0, nil, err
	}
	st, err := as.SetAutoscale(q.ctx, q.name, p)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, st, nil
}

func getAutoscale(as registry.Autoscalers, q *request) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	st, err := as.GetAutoscale(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, st, nil
}

func deleteAutoscale(as registry.Autoscalers, q *request) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	msg, err := as.DeleteAutoscale(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, messageAnswer{Message: msg}, nil
}
