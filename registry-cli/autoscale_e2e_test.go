package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/registry"
)

// apiCall makes one request to a registry's HTTP API and returns the
// status and the body.
func apiCall(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", method, url, err)
	}
	return resp.StatusCode, out
}

// apiState reads a service's autoscaling through the HTTP API.
func apiState(t *testing.T, api, service string) registry.AutoscaleState {
	t.Helper()
	status, body := apiCall(t, "GET", api+"/service/"+service+"/autoscale", "")
	var st registry.AutoscaleState
	if status != http.StatusOK || json.Unmarshal(body, &st) != nil {
		t.Fatalf("GET /service/%s/autoscale: %d %s", service, status, body)
	}
	return st
}

// registry-cli autoscale against a real registry-service: a policy set,
// shown and turned off through the CLI, evaluated by the leader (status
// shows it and its decision), read through the HTTP API as the CLI shows
// it, set through the HTTP API and shown by the CLI (one implementation
// behind both doors); the refusals, which change nothing.
func TestAutoscale(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(freeport.One("127.0.0.1"))
	api := "http://" + addr
	n := startRegistry(t, "-api-listen", addr) // the last -api-listen wins
	n.must("add", writeFile(t, "hello.json", goodConfig), "hello")

	// No policy yet.
	n.fails(1, `"hello" has no autoscaling policy`, "autoscale", "hello")
	if status, body := apiCall(t, "GET", api+"/service/hello/autoscale", ""); status != http.StatusNotFound {
		t.Fatalf("GET without a policy: %d %s", status, body)
	}

	// Set: the stored policy, in two lines; -min is 1 unless given.
	out := n.must("autoscale", "hello", "-max", "5", "-rps", "50", "-interval", "1s", "-window", "1m")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || lines[0] != "hello: autoscale min 1 max 5 on physarum: rps 50 per instance" ||
		!strings.HasPrefix(lines[1], "  every 1s, scale-down window 1m, cooldown 30s; set by peer 12D3KooW") {
		t.Fatalf("autoscale set:\n%s", out)
	}
	var cliState registry.AutoscaleState
	n.mustJSON(&cliState, "autoscale", "hello")
	want := registry.AutoscalePolicy{Min: 1, Max: 5, Checks: []registry.AutoscaleCheck{{Metric: registry.MetricRPS, Target: 50}},
		EvaluationInterval: registry.Duration(time.Second), StabilizationWindow: registry.Duration(time.Minute),
		Cooldown: registry.Duration(registry.DefaultCooldown), Compute: registry.ComputePhysarum}
	if cliState.Service != "hello" || !reflect.DeepEqual(cliState.Policy, want) || !strings.HasPrefix(cliState.SetBy, "peer ") || cliState.SetAt.IsZero() {
		t.Fatalf("autoscale -json: %+v, want the policy %+v", cliState, want)
	}
	// The HTTP API shows the same policy, set by the same caller.
	if st := apiState(t, api, "hello"); !reflect.DeepEqual(st.Policy, cliState.Policy) || st.SetBy != cliState.SetBy || !st.SetAt.Equal(cliState.SetAt) {
		t.Fatalf("GET /service/hello/autoscale: %+v; the CLI shows %+v", st, cliState)
	}

	// The leader evaluates it: below min 1, the count goes 0 → 1, set by
	// the autoscaler; show and status say so.
	eventually.Succeeds(t, 30*time.Second, func() error {
		st := n.status("hello")
		if st.Computes[registry.ComputePhysarum].Desired != 1 || st.Autoscale == nil || st.Autoscale.Last == nil {
			return fmt.Errorf("status: %+v", st)
		}
		return nil
	})
	if st := n.status("hello"); st.Computes[registry.ComputePhysarum].SetBy != "autoscaler" {
		t.Errorf("desired count set by %q, want the autoscaler", st.Computes[registry.ComputePhysarum].SetBy)
	}
	out = n.must("autoscale", "hello")
	if !strings.HasPrefix(out, lines[0]+"\n") || !strings.Contains(out, "\n  last decision ") || strings.Contains(out, "none yet") {
		t.Fatalf("autoscale show:\n%s", out)
	}
	out = n.must("status", "hello")
	if !strings.Contains(out, "\nautoscale: min 1 max 5 on physarum: rps 50 per instance; every 1s, scale-down window 1m, cooldown 30s\nlast decision ") {
		t.Fatalf("status:\n%s", out)
	}

	// Refused: the policy stays as it was.
	n.fails(2, "without a check", "autoscale", "hello", "-max", "5")
	n.fails(2, "-min 6 is above -max 5", "autoscale", "hello", "-min", "6", "-max", "5", "-rps", "50")
	n.fails(2, "-off takes no other option", "autoscale", "hello", "-off", "-max", "5")
	n.fails(1, `"ghost"`, "autoscale", "ghost", "-max", "5", "-rps", "50")
	n.fails(1, "-max-scale", "autoscale", "hello", "-max", "5000", "-rps", "50")
	n.fails(1, `"nope"`, "autoscale", "hello", "-max", "5", "-rps", "50", "-compute", "nope")
	if st := apiState(t, api, "hello"); !reflect.DeepEqual(st.Policy, want) {
		t.Fatalf("after refusals the policy is %+v", st.Policy)
	}

	// A policy put through the HTTP API is what the CLI shows.
	status, body := apiCall(t, "PUT", api+"/service/hello/autoscale", `{"min": 0, "max": 3, "checks": [{"metric": "cpu", "target": 70}], "cooldown": "1m"}`)
	if status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	var put registry.AutoscaleState
	if err := json.Unmarshal(body, &put); err != nil || put.Policy.Min != 0 || put.Policy.Max != 3 || put.SetBy != "http 127.0.0.1" {
		t.Fatalf("PUT answered %s (%v)", body, err)
	}
	n.mustJSON(&cliState, "autoscale", "hello")
	if !reflect.DeepEqual(cliState.Policy, put.Policy) || cliState.SetBy != put.SetBy {
		t.Fatalf("the CLI shows %+v after the API put %+v", cliState, put)
	}
	if out := n.must("autoscale", "hello"); !strings.HasPrefix(out, "hello: autoscale min 0 max 3 on physarum: cpu 70% per instance\n  every 10s, scale-down window 5m, cooldown 1m; set by http 127.0.0.1 ") {
		t.Fatalf("autoscale show after the API's put:\n%s", out)
	}

	// Off, through the CLI: gone from both doors and from status; the
	// desired count stays.
	if out := n.must("autoscale", "hello", "-off"); out != "autoscaling off for hello; its desired count stays as it is\n" {
		t.Fatalf("autoscale -off: %q", out)
	}
	if status, body := apiCall(t, "GET", api+"/service/hello/autoscale", ""); status != http.StatusNotFound {
		t.Fatalf("GET after -off: %d %s", status, body)
	}
	n.fails(1, "has no autoscaling policy", "autoscale", "hello")
	n.fails(1, "has no autoscaling policy", "autoscale", "hello", "-off")
	st := n.status("hello")
	if st.Autoscale != nil || st.Computes[registry.ComputePhysarum].Desired != 1 {
		t.Fatalf("status after -off: %+v", st)
	}
	if out := n.must("status", "hello"); strings.Contains(out, "autoscale:") || strings.Contains(out, "last decision") {
		t.Fatalf("status after -off:\n%s", out)
	}
	var off map[string]string
	n.mustJSON(&cliState, "autoscale", "hello", "-max", "2", "-inflight", "3")
	n.mustJSON(&off, "autoscale", "hello", "-off")
	if !strings.HasPrefix(off["Message"], "autoscaling off for hello") {
		t.Fatalf("autoscale -off -json: %+v", off)
	}
	if status, body := apiCall(t, "DELETE", api+"/service/hello/autoscale", ""); status != http.StatusNotFound {
		t.Fatalf("DELETE after -off: %d %s", status, body)
	}
}
