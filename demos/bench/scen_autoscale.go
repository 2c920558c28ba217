package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/physarum-p2p/physarum/demos/loadgen"
	"github.com/physarum-p2p/physarum/registry"
)

// The autoscale scenario's policy and load: min 1, max 8, 50 req/s per
// instance; a steady 90 req/s (2 instances), then steps ×2 and ×4 (4 and 8
// instances). Not 100: a total on a multiple of the target is on the edge
// of ceil(total / target), and a measured 101.7 req/s holds 3 instances
// as surely as 98 holds 2.
const (
	asBase   = 90 // req/s of the steady load
	asTarget = 50 // req/s per instance the policy aims at
	asMax    = 8
	asWindow = 20 * time.Second // stabilization window
	// asCooldown covers the time the load takes to reach the registry
	// (each instance's proxy measures over 5 s, its allocator publishes
	// at each heartbeat, 3.3 s): with 2 s, a steady 100 req/s went
	// 1 → 2 → 4 → 6 on figures taken before the last change.
	asCooldown = 10 * time.Second
	// asHold is how long a count must hold still, the load steady, before
	// a step: the proxies' 5 s load window full at the current rate.
	asHold = 8 * time.Second
)

// hpaAnchor is the reference the reaction times are read against; it is
// Kubernetes' documented defaults, not a measurement.
const hpaAnchor = "Kubernetes HPA defaults (documented, not measured): evaluated every 15 s (--horizontal-pod-autoscaler-sync-period) " +
	"on metrics-server's 15 s resolution, so the desired count moves 15-30 s after a step; scale-out at most max(100 %, +4 pods) per 15 s; " +
	"tolerance 10 %"

const hpaDownAnchor = "Kubernetes HPA default: scale-down after a 5 min stabilization window (--horizontal-pod-autoscaler-downscale-stabilization), " +
	"then at most 100 % per 15 s"

// runAutoscale measures how fast autoscaling follows a load step: a
// service with a policy (min 1, max 8, rps 50 per instance, a 20 s
// stabilization window) under a steady 90 req/s through a client proxy
// (2 instances), then 180 req/s (×2: 4 instances) and 360 req/s (×4: 8).
// For each step: the time until the desired count moves, until status
// shows the new instances running, and until requests are answered by
// them (hello names its instance); the requests that failed and the p99
// latency meanwhile; and, when the load drops or stops, the time until the
// count comes down. With an evaluation interval of 1 s, and (full mode) of
// the default 10 s.
func runAutoscale(ctx context.Context, r *run) error {
	n, err := r.s.newNetwork(r, "autoscale", false)
	if err != nil {
		return err
	}
	defer n.close()
	intervals := []time.Duration{time.Second}
	if !r.quick() {
		intervals = append(intervals, registry.DefaultEvaluationInterval)
	}
	r.sc.Setup = fmt.Sprintf("1 registry-service (the reconciler's leader, which evaluates the policies), 3 allocators (process "+
		"runtime, -cpus 1, -memory 1024, the default 10 s lease: load published with each heartbeat, every 3.3 s, measured by each "+
		"instance's proxy over 5 s), 1 client proxy; the service is hello (CpuReq 50, MemoryReq 16) with the policy min 1, max %d, "+
		"rps target %d per instance, stabilization window %s, cooldown %s, evaluation interval %s; an open-loop load of GET / "+
		"through the client proxy (keep-alive), status read every %s; %s.",
		asMax, asTarget, asWindow, asCooldown, durList(intervals), asStatusPoll, n.timing())
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	var specs []allocSpec
	for i := 1; i <= 3; i++ {
		specs = append(specs, allocSpec{name: fmt.Sprintf("a%d", i), runtime: "process", cpus: "1", memory: 1024})
	}
	if _, err := n.startAllocators(ctx, specs...); err != nil {
		return err
	}
	if err := n.addProcessService(ctx, "hello", 50, 16); err != nil {
		return err
	}
	cp, err := n.proxyOnceListed(ctx, len(specs))
	if err != nil {
		return err
	}
	hc := newHTTPClient(30 * time.Second)
	defer hc.CloseIdleConnections()
	for i, iv := range intervals {
		svc := "hello"
		if i > 0 {
			svc = fmt.Sprintf("hello-%s", iv)
			if err := n.copyService(ctx, "hello", svc); err != nil {
				return err
			}
		}
		err := autoscaleRun(ctx, r, n, hc, cp.url, svc, iv)
		if err != nil {
			r.failf("evaluation interval %s: %v", iv, err)
		}
		// The service's instances are not needed any more: free the room.
		if derr := n.apiDo(ctx, hc, http.MethodDelete, "/service/"+svc+"/autoscale", nil); derr == nil {
			_ = n.apiScale(ctx, hc, svc, "", 0)
		}
		if ctx.Err() != nil {
			return err
		}
	}
	r.notef("Reaction times run from the moment the load generator changed its rate. \"Desired moves\" is the first status read "+
		"(every %s) with a higher desired count; \"running\" the first with running_resources at the step's count; \"answered "+
		"by a new instance\" the first answer (hello names its instance) from an instance that did not exist at the step, and "+
		"\"all new answering\" the moment every new instance the step needs has answered once. The load is measured per instance "+
		"over 5 s and published with the allocators' heartbeats (every 3.3 s at the default lease), so the registry sees a step "+
		"a few seconds late whatever the interval. Scale-out is limited to max(2×, +4) per step: 2 → 8 takes two steps "+
		"(2 → 6 → 8), the second after the %s cooldown and the next evaluation.", asStatusPoll, asCooldown)
	r.notef("%s. %s. Here the window is %s (for the run's length); the defaults are an interval of 10 s, a 5 min window and "+
		"a 30 s cooldown.", hpaAnchor, hpaDownAnchor, asWindow)
	return nil
}

// asStatusPoll is how often the autoscale scenario reads status.
const asStatusPoll = 100 * time.Millisecond

// autoscaleRun runs the steps for one service whose policy is evaluated
// every interval.
func autoscaleRun(ctx context.Context, r *run, n *network, hc *http.Client, proxyURL, svc string, interval time.Duration) error {
	policy := map[string]any{
		"min": 1, "max": asMax, "checks": []map[string]any{{"metric": registry.MetricRPS, "target": asTarget}},
		"evaluation_interval": interval.String(), "stabilization_window": asWindow.String(), "cooldown": asCooldown.String(),
	}
	body, _ := json.Marshal(policy)
	if err := n.apiDo(ctx, hc, http.MethodPut, "/service/"+svc+"/autoscale", body); err != nil {
		return err
	}
	// The policy's min brings the first instance up before any request,
	// so that the client proxy starts nothing on demand.
	if _, _, err := n.waitStatus(ctx, hc, svc, time.Minute, func(st registry.ServiceStatus) bool {
		return st.RunningResources >= 1
	}); err != nil {
		return err
	}
	label := fmt.Sprintf("interval %s", interval)
	w := startAsWatch(ctx, r, n, hc, svc, label)
	defer w.stop()
	l := startAsLoad(ctx, proxyURL+"/"+svc+"/", asBase)
	defer l.stop()
	react := 2*interval + time.Minute // the longest a step may take

	if _, err := w.steady(ctx, 2, asHold, react+asWindow); err != nil {
		return fmt.Errorf("steady %d req/s: %w", asBase, err)
	}
	if err := asUp(ctx, r, w, l, label, "×2", 2*asBase, 2, 4, react); err != nil {
		return err
	}
	if !r.quick() {
		if err := asDown(ctx, r, w, l, label, fmt.Sprintf("load back to %d req/s", asBase), asBase, 4, 2); err != nil {
			return err
		}
		if _, err := w.steady(ctx, 2, asHold, react+asWindow); err != nil {
			return fmt.Errorf("steady %d req/s again: %w", asBase, err)
		}
		if err := asUp(ctx, r, w, l, label, "×4", 4*asBase, 2, 8, react); err != nil {
			return err
		}
	} else if _, err := w.steady(ctx, 4, 3*time.Second, react); err != nil {
		return err
	}
	cur := w.last().desired
	if err := asDown(ctx, r, w, l, label, "load stopped", 0, cur, 1); err != nil {
		return err
	}
	sent, failed, skipped := l.totals()
	r.notef("%s: %d requests sent in all, %d failed, %d not sent (the generator's 512 in flight were taken). The decisions "+
		"that changed the count, as status showed them: %s", label, sent, failed, skipped, strings.Join(w.decisions(), " | "))
	return nil
}

// asUp steps the load from what it is to rate and measures until the
// desired count is to and every new instance has answered.
func asUp(ctx context.Context, r *run, w *asWatch, l *asLoad, label, step string, rate, from, to int, timeout time.Duration) error {
	pre := w.last()
	known := map[string]bool{}
	for _, id := range pre.ids {
		known[id] = true
	}
	before := l.since(time.Now().Add(-10 * time.Second))
	t0 := l.setRate(rate)
	r.say("%s: step %s, %d → %d req/s at %s", label, step, l.prevRate(), rate, t0.Format("15:04:05.000"))
	need := to - from
	deadline := t0.Add(timeout)
	var allNew time.Time
	for allNew.IsZero() {
		if time.Now().After(deadline) {
			p := w.last()
			return fmt.Errorf("step %s: not every new instance answered within %s (desired %d, running %d, %d new answered)",
				step, timeout, p.desired, p.running, len(newInstances(l.since(t0), known)))
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
		if first := newInstances(l.since(t0), known); len(first) >= need && w.first(t0, func(p asPoint) bool { return p.running >= to }) != nil {
			allNew = first[need-1]
		}
	}
	// A little more load, so that requests sent just before the last
	// instance answered have come back.
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return err
	}
	moved := w.first(t0, func(p asPoint) bool { return p.desired > from })
	reached := w.first(t0, func(p asPoint) bool { return p.desired >= to })
	running := w.first(t0, func(p asPoint) bool { return p.running >= to })
	firstNew := newInstances(l.since(t0), known)[0]
	during := l.between(t0, allNew.Add(time.Second))
	lat, failed, sample := during.stats()
	baseLat, _, _ := before.stats()
	name := fmt.Sprintf("%s, %s (%d → %d req/s, %d → %d instances)", label, step, rate/(to/from), rate, from, to)
	at := func(p *asPoint) float64 {
		if p == nil {
			return notMeasured
		}
		return p.at.Sub(t0).Seconds()
	}
	r.fig(Figure{Name: name + ": desired count moves", Value: at(moved), Unit: "s", Anchor: hpaAnchor,
		Note: "path " + w.path(t0)})
	r.fig(Figure{Name: name + fmt.Sprintf(": desired count reaches %d", to), Value: at(reached), Unit: "s"})
	r.fig(Figure{Name: name + fmt.Sprintf(": status shows %d running", to), Value: at(running), Unit: "s"})
	r.fig(Figure{Name: name + ": first answer from a new instance", Value: firstNew.Sub(t0).Seconds(), Unit: "s"})
	r.fig(Figure{Name: name + fmt.Sprintf(": all %d new instances answering", need), Value: allNew.Sub(t0).Seconds(), Unit: "s"})
	r.fig(Figure{Name: name + ": failed requests until then", Value: float64(failed), Unit: "requests", Samples: len(during),
		Target: lt(0.5, "0"), Note: sample})
	r.fig(Figure{Name: name + ": request latency p99 until then", Value: msec(lat.p99()), Unit: "ms", Samples: len(lat),
		Baseline: &Baseline{Name: fmt.Sprintf("p99 of the 10 s of steady %d req/s before the step", rate/(to/from)),
			Value: msec(baseLat.p99()), Unit: "ms"}})
	return nil
}

// asDown changes the load to rate (0: stopped) and measures until the
// count has come down from from to to and the instances are gone.
func asDown(ctx context.Context, r *run, w *asWatch, l *asLoad, label, what string, rate, from, to int) error {
	t0 := l.setRate(rate)
	r.say("%s: %s (%d → %d req/s) at %s; the count may come down once the %s window has seen nothing higher",
		label, what, l.prevRate(), rate, t0.Format("15:04:05.000"), asWindow)
	p, err := w.waitFor(ctx, 3*asWindow+time.Minute, func(p asPoint) bool { return p.desired <= to && p.pinned <= to })
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}
	downAt := notMeasured
	if down := w.first(t0, func(p asPoint) bool { return p.desired < from }); down != nil {
		downAt = down.at.Sub(t0).Seconds()
	}
	name := fmt.Sprintf("%s, %s (%d → %d instances)", label, what, from, to)
	path := w.path(t0)
	r.fig(Figure{Name: name + ": desired count comes down", Value: downAt, Unit: "s", Anchor: hpaDownAnchor,
		Note: fmt.Sprintf("window %s; path %s", asWindow, path)})
	r.fig(Figure{Name: name + ": the instances stopped (status)", Value: p.at.Sub(t0).Seconds(), Unit: "s"})
	if rate > 0 {
		during := l.between(t0, p.at.Add(time.Second))
		_, failed, sample := during.stats()
		r.fig(Figure{Name: name + ": failed requests until then", Value: float64(failed), Unit: "requests", Samples: len(during),
			Target: lt(0.5, "0"), Note: sample})
	}
	if strings.Count(path, "→") > 1 {
		r.notef("%s: the count came down in more than one step: %s", name, path)
	}
	return nil
}

// newInstances returns, for each instance not in known that answered one
// of reqs, when it first answered, earliest first.
func newInstances(reqs asReqs, known map[string]bool) []time.Time {
	first := map[string]time.Time{}
	for _, q := range reqs {
		if q.inst == "" || known[q.inst] {
			continue
		}
		done := q.at.Add(q.lat)
		if t, ok := first[q.inst]; !ok || done.Before(t) {
			first[q.inst] = done
		}
	}
	var out []time.Time
	for _, t := range first {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// apiDo sends a write to the registry's HTTP API and fails unless it is
// answered 200.
func (n *network) apiDo(ctx context.Context, hc *http.Client, method, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, n.api+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// asPoint is one status read.
type asPoint struct {
	at                       time.Time
	desired, running, pinned int
	ids                      []string // every instance of the service
	reason                   string   // the last decision's
	decided                  time.Time
	changed                  bool // the last decision changed the count
}

// asWatch reads a service's status every asStatusPoll and keeps every
// read, saying each change of the desired count or of the decision.
type asWatch struct {
	mu     sync.Mutex
	points []asPoint
	reads  []string // decisions, as said
	stop   func()
}

func startAsWatch(ctx context.Context, r *run, n *network, hc *http.Client, svc, label string) *asWatch {
	w := &asWatch{}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	w.stop = sync.OnceFunc(func() { cancel(); <-done })
	go func() {
		defer close(done)
		var last asPoint
		for ctx.Err() == nil {
			st, err := n.apiStatus(ctx, hc, svc)
			if err == nil {
				p := asPoint{at: time.Now(), desired: st.Computes[registry.ComputePhysarum].Desired, running: st.RunningResources,
					pinned: pinnedLeft(st)}
				for _, in := range st.Instances {
					p.ids = append(p.ids, in.ID)
				}
				if a := st.Autoscale; a != nil && a.Last != nil {
					p.reason, p.decided, p.changed = a.Last.Reason, a.Last.At, a.Last.Changed
				}
				decision := p.changed && !p.decided.Equal(last.decided)
				if p.desired != last.desired || p.running != last.running || decision {
					r.say("%s: desired %d, running %d; last decision: %s", label, p.desired, p.running, p.reason)
				}
				if decision {
					w.mu.Lock()
					w.reads = append(w.reads, fmt.Sprintf("%s %s", p.decided.Local().Format("15:04:05.0"), p.reason))
					w.mu.Unlock()
				}
				last = p
				w.mu.Lock()
				w.points = append(w.points, p)
				w.mu.Unlock()
			}
			_ = sleepCtx(ctx, asStatusPoll)
		}
	}()
	return w
}

func (w *asWatch) last() asPoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.points) == 0 {
		return asPoint{}
	}
	return w.points[len(w.points)-1]
}

// first returns the first read at or after t that ok accepts, or nil.
func (w *asWatch) first(t time.Time, ok func(asPoint) bool) *asPoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.points {
		if !p.at.Before(t) && ok(p) {
			return &p
		}
	}
	return nil
}

// waitFor waits for a read that ok accepts, from now on.
func (w *asWatch) waitFor(ctx context.Context, timeout time.Duration, ok func(asPoint) bool) (asPoint, error) {
	start := time.Now()
	for {
		if p := w.first(start, ok); p != nil {
			return *p, nil
		}
		if time.Since(start) > timeout {
			p := w.last()
			return p, fmt.Errorf("not reached within %s: desired %d, running %d, %d pinned; last decision: %s",
				timeout, p.desired, p.running, p.pinned, p.reason)
		}
		if err := sleepCtx(ctx, asStatusPoll); err != nil {
			return asPoint{}, err
		}
	}
}

// steady waits until want instances are desired and running and have been
// for hold.
func (w *asWatch) steady(ctx context.Context, want int, hold, timeout time.Duration) (asPoint, error) {
	ok := func(p asPoint) bool { return p.desired == want && p.running == want && p.pinned == want }
	start := time.Now()
	for {
		p, err := w.waitFor(ctx, timeout-time.Since(start), ok)
		if err != nil {
			return p, fmt.Errorf("%d instances: %w", want, err)
		}
		if err := sleepCtx(ctx, hold); err != nil {
			return p, err
		}
		w.mu.Lock()
		held := true
		for _, q := range w.points {
			if !q.at.Before(p.at) && !ok(q) {
				held = false
			}
		}
		w.mu.Unlock()
		if held {
			return p, nil
		}
	}
}

// path is the sequence of desired counts read from t on: "2 → 4".
func (w *asWatch) path(t time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var counts []string
	last := -1
	for i, p := range w.points {
		if p.at.Before(t) && (i+1 >= len(w.points) || w.points[i+1].at.Before(t)) {
			continue
		}
		if p.desired != last {
			counts = append(counts, fmt.Sprintf("%d (%.1f s)", p.desired, max(0, p.at.Sub(t).Seconds())))
			last = p.desired
		}
	}
	return strings.Join(counts, " → ")
}

// decisions returns the decisions status showed, each once, with when.
func (w *asWatch) decisions() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.reads)
}

// asReq is one request of the load.
type asReq struct {
	at   time.Time
	lat  time.Duration
	inst string // the instance that answered; "" when it failed
	err  string
}

type asReqs []asReq

// stats returns the latencies of the answered requests, the number that
// failed, and the first failures.
func (rs asReqs) stats() (dist, int, string) {
	var lat dist
	failed := 0
	var first []string
	for _, q := range rs {
		if q.inst == "" {
			failed++
			if len(first) < 3 {
				first = append(first, q.at.Format("15:04:05.000")+" "+q.err)
			}
			continue
		}
		lat = append(lat, q.lat)
	}
	if len(first) == 0 {
		return lat, 0, ""
	}
	return lat, failed, "first: " + strings.Join(first, "; ")
}

// asLoad sends GETs at a rate that can be changed (open loop: a request
// is sent on time whatever the earlier ones do, up to 512 in flight).
type asLoad struct {
	url     string
	hc      *http.Client
	pacer   *loadgen.Pacer
	prev    atomic.Int64
	mu      sync.Mutex
	reqs    asReqs
	skipped int
	stop    func()
}

func startAsLoad(ctx context.Context, url string, rate int) *asLoad {
	tr := &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	l := &asLoad{url: url, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	l.pacer = loadgen.Start(ctx, rate, 5*time.Millisecond, 512, l.one, func() {
		l.mu.Lock()
		l.skipped++
		l.mu.Unlock()
	})
	l.stop = func() { l.pacer.Stop(); tr.CloseIdleConnections() }
	return l
}

// one sends one request and records it.
func (l *asLoad) one(ctx context.Context) {
	q := asReq{at: time.Now()}
	code, body, err := get(ctx, l.hc, l.url)
	q.lat = time.Since(q.at)
	inst, ok := strings.CutPrefix(body, "hello from ")
	switch {
	case ctx.Err() != nil:
		return // the load was stopped: not the network's failure
	case err != nil:
		q.err = err.Error()
	case code != http.StatusOK || !ok:
		q.err = fmt.Sprintf("%d %s", code, oneLineOf(body))
	default:
		q.inst = strings.TrimSpace(inst)
	}
	l.mu.Lock()
	l.reqs = append(l.reqs, q)
	l.mu.Unlock()
}

// setRate changes the rate and returns when.
func (l *asLoad) setRate(rate int) time.Time {
	l.prev.Store(int64(l.pacer.SetRate(rate)))
	return time.Now()
}

func (l *asLoad) prevRate() int64 { return l.prev.Load() }

// since returns the requests sent from t on.
func (l *asLoad) since(t time.Time) asReqs { return l.between(t, time.Now().Add(time.Hour)) }

// between returns the requests sent from t0 until before t1.
func (l *asLoad) between(t0, t1 time.Time) asReqs {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out asReqs
	for _, q := range l.reqs {
		if !q.at.Before(t0) && q.at.Before(t1) {
			out = append(out, q)
		}
	}
	return out
}

func (l *asLoad) totals() (sent, failed, skipped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.reqs {
		if q.inst == "" {
			failed++
		}
	}
	return len(l.reqs), failed, l.skipped
}

func oneLineOf(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return s
}

// durList writes durations as "1s and 10s".
func durList(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, d.String())
	}
	return strings.Join(parts, " and ")
}
