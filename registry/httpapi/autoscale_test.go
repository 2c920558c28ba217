package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// specPolicy is SPEC.md section 12's example body.
const specPolicy = `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}], "evaluation_interval": "10s", "stabilization_window": "5m", "cooldown": "30s"}`

// PUT, GET and DELETE of a policy: the shapes of SPEC.md section 12, what
// reaches the Controller, and the answers.
func TestAutoscaleRoutes(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	f.computes["site-a"] = registry.Compute{Name: "site-a", Connector: "physarum:labels?site=a"}
	h := New(f, Options{})

	refusal(t, send(t, h, "GET", "/service/svc/autoscale", ""), http.StatusNotFound, wire.CodeNotFound)

	var st registry.AutoscaleState
	answer(t, send(t, h, "PUT", "/service/SVC/autoscale", specPolicy), http.StatusOK, &st)
	want := registry.AutoscalePolicy{Min: 1, Max: 5, Checks: []registry.AutoscaleCheck{{Metric: registry.MetricRPS, Target: 50}},
		EvaluationInterval: registry.Duration(10 * time.Second), StabilizationWindow: registry.Duration(5 * time.Minute),
		Cooldown: registry.Duration(30 * time.Second)}
	if c := f.last(t); c.op != "SetAutoscale" || c.service != "svc" || !reflect.DeepEqual(c.policy, want) || c.caller != "http 127.0.0.1" {
		t.Fatalf("the Controller got %+v, want the policy %+v", c, want)
	}
	want.Compute = registry.ComputePhysarum
	if st.Service != "svc" || !reflect.DeepEqual(st.Policy, want) || st.SetBy != "http 127.0.0.1" || st.SetAt.IsZero() || st.Last != nil {
		t.Fatalf("PUT answered %+v", st)
	}

	// GET answers the same state; the durations are Go duration strings.
	w := send(t, h, "GET", "/service/svc/autoscale", "")
	body := w.Body.String()
	var got registry.AutoscaleState
	answer(t, w, http.StatusOK, &got)
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("GET answered %+v, PUT %+v", got, st)
	}
	for _, s := range []string{`"service":"svc"`, `"min":1`, `"max":5`, `"checks":[{"metric":"rps","target":50}]`,
		`"evaluation_interval":"10s"`, `"stabilization_window":"5m0s"`, `"cooldown":"30s"`, `"compute":"physarum"`, `"set_by":"http 127.0.0.1"`} {
		if !strings.Contains(body, s) {
			t.Errorf("GET answered %s: no %s", body, s)
		}
	}

	// A second PUT replaces the policy, every metric and a compute; the
	// durations left out are the defaults; min 0 is allowed when given.
	answer(t, send(t, h, "PUT", "/service/svc/autoscale/", `{"min": 0, "max": 8, "compute": "site-a", "checks": [
		{"metric": "inflight", "target": 4}, {"metric": "cpu", "target": 70.5},
		{"metric": "prometheus", "target": 100, "query": "sum(rate(http_requests_total{job=\"svc\"}[1m]))"}]}`), http.StatusOK, &st)
	if p := st.Policy; p.Min != 0 || p.Max != 8 || p.Compute != "site-a" || len(p.Checks) != 3 || p.Checks[1].Target != 70.5 ||
		p.Checks[2].Query != `sum(rate(http_requests_total{job="svc"}[1m]))` ||
		time.Duration(p.EvaluationInterval) != registry.DefaultEvaluationInterval ||
		time.Duration(p.StabilizationWindow) != registry.DefaultStabilizationWindow || time.Duration(p.Cooldown) != registry.DefaultCooldown {
		t.Fatalf("second PUT answered %+v", st)
	}
	// The last decision, once there is one, is in the answer.
	f.mu.Lock()
	a := f.autoscale["svc"]
	a.Last = &registry.AutoscaleDecision{At: fakeSetAt, Current: 1, Desired: 4, Changed: true, Reason: "rps 200.0 per instance > target 50 (tolerance 10%): 1 → 4"}
	f.autoscale["svc"] = a
	f.mu.Unlock()
	w = send(t, h, "GET", "/service/svc/autoscale", "")
	if !strings.Contains(w.Body.String(), `"last_decision":{"at":"2026-12-07T14:00:00Z","current":1,"desired":4,"changed":true,"reason":"rps 200.0 per instance > target 50 (tolerance 10%): 1 → 4"}`) {
		t.Fatalf("GET answered %s", w.Body)
	}

	var msg messageAnswer
	answer(t, send(t, h, "DELETE", "/service/svc/autoscale", ""), http.StatusOK, &msg)
	if msg.Message != "autoscaling off for svc; its desired count stays as it is" {
		t.Fatalf("DELETE answered %+v", msg)
	}
	refusal(t, send(t, h, "GET", "/service/svc/autoscale", ""), http.StatusNotFound, wire.CodeNotFound)
	refusal(t, send(t, h, "DELETE", "/service/svc/autoscale", ""), http.StatusNotFound, wire.CodeNotFound)
	w = send(t, h, "POST", "/service/svc/autoscale", specPolicy)
	refusal(t, w, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if allow := w.Header().Get("Allow"); allow != "DELETE, GET, HEAD, PUT" {
		t.Errorf("Allow: %q", allow)
	}
}

// Bad bodies are 400 with one message naming the field, and never reach
// the Controller; an unknown service or compute is 404.
func TestAutoscaleBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		says       string
	}{
		{"malformed", `{"min": 1,`, 400, "malformed JSON"},
		{"not an object", `[1, 5]`, 400, "want a JSON object, got an array"},
		{"trailing data", specPolicy + `{}`, 400, "malformed JSON"},
		{"unknown field", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}], "target": 50}`, 400, `unknown field "target": a policy takes min, max, checks`},
		{"unknown check field", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50, "window": "1m"}]}`, 400, `invalid checks[0]: unknown field "window": a check takes metric, target and query`},
		{"no min", `{"max": 5, "checks": [{"metric": "rps", "target": 50}]}`, 400, "invalid min: missing"},
		{"null min", `{"min": null, "max": 5, "checks": [{"metric": "rps", "target": 50}]}`, 400, "invalid min: missing"},
		{"no max", `{"min": 1, "checks": [{"metric": "rps", "target": 50}]}`, 400, "invalid max: missing"},
		{"min a string", `{"min": "1", "max": 5, "checks": [{"metric": "rps", "target": 50}]}`, 400, "invalid min: want a whole number, got a string"},
		{"min fractional", `{"min": 1.5, "max": 5, "checks": [{"metric": "rps", "target": 50}]}`, 400, "invalid min: want a whole number, got a number 1.5"},
		{"min negative", `{"min": -1, "max": 5, "checks": [{"metric": "rps", "target": 50}]}`, 400, "invalid min: -1 is negative"},
		{"min above max", `{"min": 6, "max": 5, "checks": [{"metric": "rps", "target": 50}]}`, 400, "invalid min: min 6 > max 5"},
		{"max 0", `{"min": 0, "max": 0, "checks": [{"metric": "rps", "target": 50}]}`, 400, "invalid max: 0: want at least 1"},
		{"max huge", `{"min": 1, "max": 99999999999999999999, "checks": [{"metric": "rps", "target": 50}]}`, 400, "invalid max: want a whole number"},
		{"no checks", `{"min": 1, "max": 5}`, 400, "invalid checks: none"},
		{"empty checks", `{"min": 1, "max": 5, "checks": []}`, 400, "invalid checks: none"},
		{"checks an object", `{"min": 1, "max": 5, "checks": {"metric": "rps", "target": 50}}`, 400, "invalid checks: want an array, got an object"},
		{"check a string", `{"min": 1, "max": 5, "checks": ["rps"]}`, 400, `invalid checks[0]: want an object such as {"metric": "rps", "target": 50}, got a string`},
		{"check null", `{"min": 1, "max": 5, "checks": [null]}`, 400, "invalid checks[0]: want an object"},
		{"unknown metric", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}, {"metric": "latency", "target": 5}]}`, 400, `invalid checks[1].metric: "latency": want rps, inflight, cpu or prometheus`},
		{"no metric", `{"min": 1, "max": 5, "checks": [{"target": 5}]}`, 400, "invalid checks[0].metric: missing"},
		{"negative target", `{"min": 1, "max": 5, "checks": [{"metric": "cpu", "target": -70}]}`, 400, "invalid checks[0].target: -70: want a number above 0"},
		{"no target", `{"min": 1, "max": 5, "checks": [{"metric": "rps"}]}`, 400, "invalid checks[0].target: 0: want a number above 0"},
		{"target a string", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": "50"}]}`, 400, "invalid checks[0].target: want a number, got a string"},
		{"metric twice", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}, {"metric": "rps", "target": 60}]}`, 400, "invalid checks[1].metric: rps is checks[0] already"},
		{"prometheus without query", `{"min": 1, "max": 5, "checks": [{"metric": "prometheus", "target": 50}]}`, 400, "invalid checks[0].query: missing"},
		{"query on rps", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50, "query": "up"}]}`, 400, "invalid checks[0].query: only a prometheus check takes a query"},
		{"too many checks", `{"min": 1, "max": 5, "checks": [` + strings.Repeat(`{"metric": "prometheus", "target": 1, "query": "up"},`, 16) + `{}]}`, 400, "invalid checks: 17 checks (at most 16)"},
		{"duration a number", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}], "cooldown": 30}`, 400, `invalid cooldown: number 30 (want a duration such as "30s")`},
		{"duration not one", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}], "evaluation_interval": "often"}`, 400, `invalid evaluation_interval: string "often" (want a duration such as "30s" or "5m")`},
		{"negative duration", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}], "stabilization_window": "-5m"}`, 400, "invalid stabilization_window: -5m0s: want a positive duration"},
		{"duration too long", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}], "cooldown": "25h"}`, 400, "invalid cooldown: 25h0m0s: at most 24h0m0s"},
		{"bad compute", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}], "compute": "Site A"}`, 400, "compute name"},
		{"unknown compute", `{"min": 1, "max": 5, "checks": [{"metric": "rps", "target": 50}], "compute": "nope"}`, 404, `no compute named "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.services["svc"] = helloworld
			h := New(f, Options{})
			code := wire.CodeBadRequest
			if tc.status == http.StatusNotFound {
				code = wire.CodeNotFound
			}
			msg := refusal(t, send(t, h, "PUT", "/service/svc/autoscale", tc.body), tc.status, code)
			if !strings.Contains(msg, tc.says) {
				t.Errorf("message %q does not say %q", msg, tc.says)
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "registry.") || strings.Contains(msg, "float64") {
				t.Errorf("message %q: want one line in the API's words", msg)
			}
			if ws := f.writes(); len(ws) > 0 && tc.status != http.StatusNotFound {
				t.Fatalf("the Controller was asked to write: %+v", ws)
			}
			if len(f.autoscale) != 0 {
				t.Fatalf("a policy was stored: %+v", f.autoscale)
			}
		})
	}

	// An unknown service is 404 on every method, a bad name 400.
	f := newFake()
	h := New(f, Options{})
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		body := ""
		if m == "PUT" {
			body = specPolicy
		}
		if msg := refusal(t, send(t, h, m, "/service/ghost/autoscale", body), http.StatusNotFound, wire.CodeNotFound); !strings.Contains(msg, "ghost") {
			t.Errorf("%s of an unknown service: %q", m, msg)
		}
		if msg := refusal(t, send(t, h, m, "/service/"+url.PathEscape("Bad Name!")+"/autoscale", body), http.StatusBadRequest, wire.CodeBadRequest); !strings.Contains(msg, "service name") {
			t.Errorf("%s with a bad name: %q", m, msg)
		}
	}
}

// Writes need the token as every other write does; reads too, unless
// PublicRead.
func TestAutoscaleNeedsTheToken(t *testing.T) {
	const token = "s3cret-token-of-16"
	for _, tc := range []struct {
		name, method, body string
		publicRead         bool
		auth               string
		status             int
	}{
		{"put without token", "PUT", specPolicy, true, "", 401},
		{"put with a wrong token", "PUT", specPolicy, true, "Bearer nope", 401},
		{"delete without token", "DELETE", "", true, "", 401},
		{"get without token", "GET", "", false, "", 401},
		{"public get without token", "GET", "", true, "", 200},
		{"put with token", "PUT", specPolicy, false, "Bearer " + token, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.services["svc"] = helloworld
			f.autoscale["svc"] = registry.AutoscaleState{Service: "svc", Policy: registry.AutoscalePolicy{Min: 1, Max: 2,
				Checks: []registry.AutoscaleCheck{{Metric: registry.MetricCPU, Target: 70}}}}
			h := New(f, Options{Token: token, PublicRead: tc.publicRead})
			w := send(t, h, tc.method, "/service/svc/autoscale", tc.body, "Authorization", tc.auth)
			if tc.status != http.StatusUnauthorized {
				answer(t, w, tc.status, nil)
				if tc.method == "PUT" && f.last(t).caller != "http token 127.0.0.1" {
					t.Errorf("caller %q", f.last(t).caller)
				}
				return
			}
			refusal(t, w, http.StatusUnauthorized, CodeUnauthorized)
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.calls) > 0 {
				t.Fatalf("the Controller was called: %+v", f.calls)
			}
		})
	}
}

// Without autoscaling behind it (an allocator's connector, a Controller
// that is not a registry.Autoscalers) the route is 404, saying where
// policies are set.
func TestAutoscaleOnlyWhereServed(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	connector := New(f, Options{NodeScope: "n1"})
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		msg := refusal(t, send(t, connector, m, "/service/svc/autoscale", specPolicy), http.StatusNotFound, wire.CodeNotFound)
		if !strings.Contains(msg, "registry-service") {
			t.Errorf("%s on a connector: %q", m, msg)
		}
	}
	plain := New(struct{ registry.Controller }{f}, Options{})
	msg := refusal(t, send(t, plain, "GET", "/service/svc/autoscale", ""), http.StatusNotFound, wire.CodeNotFound)
	if !strings.Contains(msg, "registry-service") {
		t.Errorf("GET without Autoscalers: %q", msg)
	}
	if ws := f.writes(); len(ws) != 0 {
		t.Fatalf("writes %+v", ws)
	}
}

// FuzzAutoscaleBody puts arbitrary bodies to /service/<name>/autoscale
// (name "": a service that exists): what is accepted reaches the
// Controller as a valid policy, and what GET then answers, put back,
// stores the same state; anything else is a 4xx that wrote nothing
// (fuzzServe).
func FuzzAutoscaleBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		fc := newFake()
		fc.services["svc"] = helloworld
		fc.computes["site-a"] = registry.Compute{Name: "site-a", Connector: "physarum:labels?site=a"}
		h := New(fc, Options{MaxBody: 4096})
		if name == "" {
			name = "svc"
		}
		status, _ := fuzzServe(t, fc, h, "PUT", "/service/"+url.PathEscape(name)+"/autoscale", body)
		if status >= 400 {
			return
		}
		c := fc.last(t)
		if status != http.StatusOK || c.op != "SetAutoscale" || c.service != "svc" {
			t.Fatalf("%q on %q accepted with %d as %+v", body, name, status, c)
		}
		if err := c.policy.Validate(); err != nil {
			t.Fatalf("%q accepted an invalid policy %+v: %v", body, c.policy, err)
		}
		_, got := fuzzServe(t, fc, h, "GET", "/service/svc/autoscale", nil)
		var st registry.AutoscaleState
		if err := json.Unmarshal(got, &st); err != nil {
			t.Fatalf("GET answered %s: %v", got, err)
		}
		policy, err := json.Marshal(st.Policy)
		if err != nil {
			t.Fatal(err)
		}
		if status, _ := fuzzServe(t, fc, h, "PUT", "/service/svc/autoscale", policy); status != http.StatusOK {
			t.Fatalf("%q: GET answered the policy %s, which PUT refuses", body, policy)
		}
		_, again := fuzzServe(t, fc, h, "GET", "/service/svc/autoscale", nil)
		if string(got) != string(again) {
			t.Fatalf("%q: GET answered %s, then after putting its policy back %s", body, got, again)
		}
	})
}
