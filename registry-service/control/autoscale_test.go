package control_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// setLoad publishes, in node n1's record, rps per running instance of svc
// (as allocators do with their heartbeats).
func (r *rig) setLoad(t *testing.T, rps float64) {
	t.Helper()
	var load []registry.InstanceLoad
	for _, in := range r.pinned(t) {
		load = append(load, registry.InstanceLoad{ID: in.ID, Service: "svc", RPS: rps})
	}
	nodes, err := r.store.ListNodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Name == "n1" {
			n.Load = load
			if _, err := r.store.PutNode(t.Context(), n, 30); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (r *rig) desired(t *testing.T) int {
	t.Helper()
	st, err := r.ctl.Status(t.Context(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	return st.Computes[registry.ComputePhysarum].Desired
}

func TestAutoscalerFollowsTheLoadAndKeepsItsDecisions(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	policy := registry.AutoscalePolicy{
		Min: 1, Max: 5, Checks: []registry.AutoscaleCheck{{Metric: registry.MetricRPS, Target: 50}},
		EvaluationInterval:  registry.Duration(time.Second),
		StabilizationWindow: registry.Duration(10 * time.Second),
		Cooldown:            registry.Duration(2 * time.Second),
	}
	st, err := r.ctl.SetAutoscale(ctx, "svc", policy)
	if err != nil {
		t.Fatal(err)
	}
	if st.Policy.Compute != registry.ComputePhysarum || st.SetBy == "" {
		t.Fatalf("stored %+v", st)
	}
	due := map[string]time.Time{}
	step := func(d time.Duration) {
		r.now = r.now.Add(d)
		r.rec.AutoscaleRound(ctx, due, "", r.now)
		r.pass(t)
	}
	// Nothing desired yet: min 1 applies at once.
	step(0)
	if got := r.desired(t); got != 1 {
		t.Fatalf("desired %d after the first evaluation, want min 1", got)
	}
	// 200 rps on one instance, target 50: 4 (once the cooldown after the
	// first change is over).
	r.setLoad(t, 200)
	step(time.Second)
	if got := r.desired(t); got != 1 {
		t.Fatalf("desired %d inside the cooldown, want 1", got)
	}
	step(2 * time.Second)
	if got := r.desired(t); got != 4 {
		t.Fatalf("desired %d under 200 rps, want 4", got)
	}
	if got := len(r.pinned(t)); got != 4 {
		t.Fatalf("%d pinned instances, want 4", got)
	}
	status, err := r.ctl.Status(ctx, "svc")
	if err != nil || status.Autoscale == nil || status.Autoscale.Last == nil || !strings.Contains(status.Autoscale.Last.Reason, "1 → 4") {
		t.Fatalf("status does not show the decision: %+v %v", status.Autoscale, err)
	}
	// The load spreads: 50 per instance, on target; then it stops.
	r.setLoad(t, 50)
	step(3 * time.Second)
	r.setLoad(t, 0)
	for range 5 {
		step(time.Second)
		if got := r.desired(t); got != 4 {
			t.Fatalf("desired %d inside the stabilization window, want 4", got)
		}
	}
	for range 10 {
		step(time.Second)
	}
	if got := r.desired(t); got != 1 {
		t.Fatalf("desired %d after the window without load, want min 1", got)
	}
	// Off: the count stays.
	if _, err := r.ctl.DeleteAutoscale(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.GetAutoscale(ctx, "svc"); wire.CodeOf(err) != wire.CodeNotFound {
		t.Fatalf("after delete: %v", err)
	}
	r.setLoad(t, 500)
	step(time.Minute)
	if got := r.desired(t); got != 1 {
		t.Fatalf("desired %d with autoscaling off, want it left at 1", got)
	}
}

func TestAutoscalerPrometheusCheck(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	var value atomic.Value
	value.Store(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"150"]}]}}`)
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, value.Load())
	}))
	defer prom.Close()
	if _, err := r.ctl.SetAutoscale(ctx, "svc", registry.AutoscalePolicy{
		Min: 1, Max: 5, Checks: []registry.AutoscaleCheck{{Metric: registry.MetricPrometheus, Target: 50, Query: "sum(rate(requests[1m]))"}},
		EvaluationInterval: registry.Duration(time.Second), Cooldown: registry.Duration(time.Millisecond),
	}); err != nil {
		t.Fatal(err)
	}
	due := map[string]time.Time{}
	step := func() {
		r.now = r.now.Add(time.Second)
		r.rec.AutoscaleRound(ctx, due, prom.URL, r.now)
	}
	step() // to min 1
	step()
	if got := r.desired(t); got != 3 {
		t.Fatalf("desired %d for a total of 150 at 50 per instance, want 3", got)
	}
	// Several series: an error in status, and no change.
	value.Store(`{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"900"]},{"value":[1,"900"]}]}}`)
	step()
	st, err := r.ctl.Status(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.desired(t); got != 3 || st.Autoscale.Last == nil || !strings.Contains(st.Autoscale.Last.Reason, "2 series") {
		t.Fatalf("desired %d, last decision %+v: want 3 and a reason naming the 2 series", got, st.Autoscale.Last)
	}
	// Nothing: the same.
	value.Store(`{"status":"success","data":{"resultType":"vector","result":[]}}`)
	step()
	st, _ = r.ctl.Status(ctx, "svc")
	if got := r.desired(t); got != 3 || !strings.Contains(st.Autoscale.Last.Reason, "no series") {
		t.Fatalf("desired %d, last decision %+v: want 3 and a reason naming the empty answer", got, st.Autoscale.Last)
	}
}

func TestSetAutoscaleRefusesBadInputAndWritesNothing(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	rps := []registry.AutoscaleCheck{{Metric: registry.MetricRPS, Target: 50}}
	for _, tc := range []struct {
		name, service string
		p             registry.AutoscalePolicy
		code, says    string
	}{
		{"min > max", "svc", registry.AutoscalePolicy{Min: 5, Max: 2, Checks: rps}, wire.CodeBadRequest, "min 5 > max 2"},
		{"unknown metric", "svc", registry.AutoscalePolicy{Min: 1, Max: 2, Checks: []registry.AutoscaleCheck{{Metric: "latency", Target: 1}}}, wire.CodeBadRequest, "latency"},
		{"negative target", "svc", registry.AutoscalePolicy{Min: 1, Max: 2, Checks: []registry.AutoscaleCheck{{Metric: registry.MetricRPS, Target: -1}}}, wire.CodeBadRequest, "target"},
		{"unknown service", "nope", registry.AutoscalePolicy{Min: 1, Max: 2, Checks: rps}, wire.CodeNotFound, "nope"},
		{"unknown compute", "svc", registry.AutoscalePolicy{Min: 1, Max: 2, Checks: rps, Compute: "mars"}, wire.CodeNotFound, "mars"},
		{"above -max-scale", "svc", registry.AutoscalePolicy{Min: 1, Max: registry.DefaultMaxScale + 1, Checks: rps}, wire.CodeBadRequest, "-max-scale"},
	} {
		_, err := r.ctl.SetAutoscale(ctx, tc.service, tc.p)
		if wire.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %s naming %q", tc.name, err, tc.code, tc.says)
		}
	}
	if _, err := r.ctl.GetAutoscale(ctx, "svc"); wire.CodeOf(err) != wire.CodeNotFound {
		t.Fatalf("a refused policy was written: %v", err)
	}
	if _, err := r.ctl.DeleteAutoscale(ctx, "svc"); wire.CodeOf(err) != wire.CodeNotFound {
		t.Fatalf("delete of no policy: %v", err)
	}
}

func TestDeletingAServiceRemovesItsPolicy(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if _, err := r.ctl.SetAutoscale(ctx, "svc", registry.AutoscalePolicy{Min: 1, Max: 2, Checks: []registry.AutoscaleCheck{{Metric: registry.MetricRPS, Target: 5}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.DeleteService(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.GetAutoscale(ctx, "svc"); !errors.Is(err, &wire.Error{Code: wire.CodeNotFound}) {
		t.Fatalf("the policy outlived its service: %v", err)
	}
}

// TestAutoscalerCountsTheLoadOverTheDesiredCount: right after a
// scale-out, the new instance has not reported yet and the old one still
// publishes the load it carried alone; the total, not the reporters'
// average, decides, so the same load does not ask for instances twice.
func TestAutoscalerCountsTheLoadOverTheDesiredCount(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if _, err := r.ctl.Scale(ctx, "svc", registry.ComputePhysarum, 2); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	pinned := r.pinned(t)
	if len(pinned) != 2 {
		t.Fatalf("%d pinned, want 2", len(pinned))
	}
	nodes, err := r.store.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := nodes[0]
	n.Load = []registry.InstanceLoad{{ID: pinned[0].ID, Service: "svc", RPS: 100}} // the other has not reported
	if _, err := r.store.PutNode(ctx, n, 30); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.SetAutoscale(ctx, "svc", registry.AutoscalePolicy{
		Min: 1, Max: 8, Checks: []registry.AutoscaleCheck{{Metric: registry.MetricRPS, Target: 50}},
		EvaluationInterval: registry.Duration(time.Second), Cooldown: registry.Duration(time.Millisecond),
	}); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(time.Second)
	r.rec.AutoscaleRound(ctx, map[string]time.Time{}, "", r.now)
	if got := r.desired(t); got != 2 {
		t.Fatalf("desired %d for 100 req/s in all at 50 per instance, want 2", got)
	}
}
