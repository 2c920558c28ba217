package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

// desiredWatch polls a service's status and keeps every desired count it
// saw, with when, until stopped.
type desiredWatch struct {
	mu   sync.Mutex
	seen []seenCount
	stop func()
}

type seenCount struct {
	at time.Time
	n  int
}

func watchDesired(t *testing.T, base, service string) *desiredWatch {
	t.Helper()
	w := &desiredWatch{}
	w.stop = pollStatus(t, base, service, func(st registry.ServiceStatus) {
		n := st.Computes[registry.ComputePhysarum].Desired
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.seen) == 0 || w.seen[len(w.seen)-1].n != n {
			w.seen = append(w.seen, seenCount{time.Now(), n})
		}
	})
	return w
}

// pollStatus hands each status of service it reads, every 100 ms, to fn,
// until the returned stop (or the test's end).
func pollStatus(t *testing.T, base, service string, fn func(registry.ServiceStatus)) (stop func()) {
	t.Helper()
	quit, done := make(chan struct{}), make(chan struct{})
	stop = sync.OnceFunc(func() { close(quit); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := status(t, base, service); err == nil {
				fn(st)
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(stop)
	return stop
}

// now is the last desired count seen.
func (w *desiredWatch) now() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seen) == 0 {
		return -1
	}
	return w.seen[len(w.seen)-1].n
}

// since returns the counts seen from t on (the one in force at t first).
func (w *desiredWatch) since(t time.Time) []seenCount {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []seenCount
	for i, s := range w.seen {
		if !s.at.Before(t) || (i+1 < len(w.seen) && w.seen[i+1].at.After(t)) || i == len(w.seen)-1 {
			out = append(out, s)
		}
	}
	return out
}

// TestAutoscalingFollowsTheLoad: min 1 max 5 at 50 req/s per instance,
// under a steady 200 req/s through a client proxy, reaches 4 (±1) within
// a few evaluations and never passes 5; when the load stops, it goes back
// to 1 in one step, and only after the stabilization window.
func TestAutoscalingFollowsTheLoad(t *testing.T) {
	n := newNetwork(t)
	n.registry()
	n.namedAllocator("as-1", "")
	n.namedAllocator("as-2", "")
	_, proxy := n.proxy()
	n.addService("web")
	const window = 8 * time.Second
	mustAPI(t, http.MethodPut, n.api+"/service/web/autoscale", map[string]any{
		"min": 1, "max": 5, "checks": []map[string]any{{"metric": "rps", "target": 50}},
		"evaluation_interval": "1s", "stabilization_window": window.String(), "cooldown": "2s",
	})
	waitRunning(t, n.api, "web", registry.ComputePhysarum, 1, time.Minute)
	w := watchDesired(t, n.api, "web")

	l := startLoad(proxy+"/web/", 200)
	start := time.Now()
	eventually.True(t, 20*time.Second, "3 to 5 instances desired under 200 req/s", func() bool { return w.now() >= 3 && w.now() <= 5 })
	t.Logf("desired %d after %s of load", w.now(), time.Since(start).Round(100*time.Millisecond))
	st := waitRunning(t, n.api, "web", registry.ComputePhysarum, w.now(), time.Minute)
	// Steady load: it stays where it is, at every change the watch saw
	// while 800 more requests (about 4 s of the load) were sent.
	steady := time.Now()
	l.mu.Lock()
	sent := l.sent
	l.mu.Unlock()
	eventually.True(t, 30*time.Second, "800 more requests under steady load", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.sent >= sent+800
	})
	for _, s := range w.since(steady) {
		if s.n < 3 || s.n > 5 {
			t.Fatalf("desired %d under steady load (at %s)", s.n, s.at.Format(time.StampMilli))
		}
	}
	l.stop()
	stopped := time.Now()
	if l.ok != l.sent {
		t.Errorf("%d of %d requests failed while scaling out: %v", l.sent-l.ok, l.sent, l.failures)
	}
	if st.Autoscale == nil || st.Autoscale.Last == nil || !strings.Contains(st.Autoscale.Last.Reason, "rps") {
		t.Errorf("status does not show the last decision: %+v", st.Autoscale)
	}

	eventually.True(t, 3*window, "back to 1 after the load stopped", func() bool { return w.now() == 1 })
	after := w.since(stopped)
	if len(after) != 2 || after[0].n < 3 || after[1].n != 1 {
		t.Fatalf("desired counts after the load stopped: %+v; want one step from the plateau to 1", after)
	}
	if took := after[1].at.Sub(stopped); took < window-time.Second {
		t.Errorf("scaled down %s after the load stopped, before the %s window", took.Round(100*time.Millisecond), window)
	}
	for _, s := range w.since(start) {
		if s.n > 5 {
			t.Fatalf("desired %d, above max 5", s.n)
		}
	}
}

// TestAutoscalingToZeroAndBack: with min 0 an idle service goes to zero;
// the next request wakes it through the proxy and is answered, and the
// policy takes over from there.
func TestAutoscalingToZeroAndBack(t *testing.T) {
	n := newNetwork(t)
	n.registry()
	n.namedAllocator("z-1", "")
	_, proxy := n.proxy()
	n.addService("sleepy")
	mustAPI(t, http.MethodPut, n.api+"/service/sleepy/autoscale", map[string]any{
		"min": 0, "max": 3, "checks": []map[string]any{{"metric": "rps", "target": 50}},
		"evaluation_interval": "500ms", "stabilization_window": "3s", "cooldown": "1s",
	})
	w := watchDesired(t, n.api, "sleepy")
	eventually.True(t, 30*time.Second, "idle service at 0 desired", func() bool { return w.now() == 0 })
	woke := time.Now()
	if err := get(&http.Client{Timeout: 30 * time.Second}, proxy+"/sleepy/"); err != nil {
		t.Fatalf("the request that wakes it: %v", err)
	}
	eventually.True(t, 20*time.Second, "the policy takes the woken service over", func() bool {
		for _, s := range w.since(woke) {
			if s.n >= 1 {
				return true
			}
		}
		return false
	})
}

// TestAutoscalingOnAPrometheusQuery: registry-service -prometheus-url
// points at a Prometheus-format API the test serves; the count follows its
// value, and an answer of several series is an error in status that
// changes nothing.
func TestAutoscalingOnAPrometheusQuery(t *testing.T) {
	var answer atomic.Value
	vector := func(values ...string) string {
		var series []string
		for _, v := range values {
			series = append(series, fmt.Sprintf(`{"metric":{},"value":[1,%q]}`, v))
		}
		return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(series, ",") + `]}}`
	}
	answer.Store(vector("120"))
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, answer.Load())
	}))
	defer prom.Close()

	n := newNetwork(t)
	dir := t.TempDir()
	r := launch.Registry{Node: launch.Node{AddrFile: dir + "/addr"}, DataDir: dir + "/data", UnsafeNoFsync: true, Extra: []string{"-prometheus-url", prom.URL}}
	n.reg = proctest.Start(t, "registry", n.bin["registry-service"], r.Args(), n.env)
	n.api = r.APIURL()
	n.boot = n.reg.Ready(launch.RegistryReady, time.Minute, r.AddrFile)
	n.env = append(n.env, "P2P_BOOTSTRAPS="+n.boot)
	n.namedAllocator("p-1", "")
	n.addService("queued")
	mustAPI(t, http.MethodPut, n.api+"/service/queued/autoscale", map[string]any{
		"min": 1, "max": 4, "checks": []map[string]any{{"metric": "prometheus", "query": "sum(queue_depth)", "target": 40}},
		"evaluation_interval": "500ms", "cooldown": "1s",
	})
	w := watchDesired(t, n.api, "queued")
	eventually.True(t, 20*time.Second, "3 desired for a total of 120 at 40 each", func() bool { return w.now() == 3 })
	answer.Store(vector("10", "20"))
	eventually.Succeeds(t, 20*time.Second, func() error {
		st, err := status(t, n.api, "queued")
		if err != nil {
			return err
		}
		if st.Autoscale == nil || st.Autoscale.Last == nil || !strings.Contains(st.Autoscale.Last.Reason, "2 series") {
			return fmt.Errorf("last decision %+v", st.Autoscale)
		}
		return nil
	})
	if got := w.now(); got != 3 {
		t.Fatalf("desired %d after an ambiguous answer, want it left at 3", got)
	}
}
