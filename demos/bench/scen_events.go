package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/registry"
)

// The events scenario's sizes.
const (
	evReaders   = 10 // stream readers of GET /v1/events
	evCallbacks = 10 // callbacks, each with its own receiver
	evServices  = 10 // services whose desired counts change
	evChanges   = 1000
	// evCompute matches no allocator: desired counts on it change (each
	// an event) without starting anything.
	evCompute = "nowhere"
)

// runEvents measures the event stream and the callbacks (issue 14) with
// 10 readers of GET /v1/events and 10 callbacks whose receivers are HTTP
// servers in this process that check every delivery's signature as a
// Standard Webhooks receiver does: the latency from a change to its event
// on a reader and at a receiver (desired counts written through the API,
// timed from their set_at, and a launched instance stopped and started
// through the lifecycle actions, timed from the action's answer); then
// 1,000 changes as fast as the API takes them, every reader and every
// callback counted for what it missed and what came twice, the time
// until the backlog is delivered, and the registry-service's CPU and
// RSS, against the same 1,000 changes with no reader and no callback in
// the same run (before and after), and with the readers alone.
func runEvents(ctx context.Context, r *run) error {
	n, err := r.s.newNetwork(r, "events", false)
	if err != nil {
		return err
	}
	defer n.close()
	changes := r.pick(evChanges, 200)
	latSamples := r.pick(100, 20)
	actions := r.pick(10, 3)
	r.sc.Setup = fmt.Sprintf("1 registry-service (etcd embedded, fsync on; it leads the callbacks' delivery worker; HTTP API "+
		"on loopback), 1 allocator (process runtime, -cpus 1, -memory 1024); %d readers of GET /v1/events (every topic, NDJSON) "+
		"and %d callbacks for every event, each POSTing to its own HTTP server in the bench process, which checks the "+
		"signature with the callback's secret; the changes are desired counts of %d copies of hello on a compute that matches "+
		"no allocator (%q: nothing starts), and one launched hello instance stopped and started; the same changes run with nothing attached, with the readers "+
		"alone, with readers and callbacks, and with nothing attached again; %s.",
		evReaders, evCallbacks, evServices, evCompute, n.timing())
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	if _, err := n.startAllocators(ctx, allocSpec{name: "a1", runtime: "process", cpus: "1", memory: 1024}); err != nil {
		return err
	}
	if err := n.addProcessService(ctx, "hello", 0, 0); err != nil {
		return err
	}
	svcs := make([]string, evServices)
	for i := range svcs {
		svcs[i] = fmt.Sprintf("ev-%02d", i)
	}
	if err := n.copyService(ctx, "hello", svcs...); err != nil {
		return err
	}
	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	if _, _, err := n.waitNodes(ctx, c, 1); err != nil {
		return err
	}
	hc := newHTTPClient(30 * time.Second)
	defer hc.CloseIdleConnections()
	if err := n.apiSend(ctx, hc, http.MethodPost, "/compute",
		map[string]string{"name": evCompute, "connector": "physarum:labels?site=" + evCompute}, http.StatusCreated, nil); err != nil {
		return err
	}
	// Every service's desired count exists before the first measurement.
	for _, s := range svcs {
		if _, err := n.scaleOn(ctx, hc, s, 0); err != nil {
			return err
		}
	}

	// The launched instance, running before anything is measured.
	uuid := newUUID()
	if err := n.apiSend(ctx, hc, http.MethodPost, "/instances", map[string]string{"uuid": uuid, "service": "hello"},
		http.StatusCreated, nil); err != nil {
		return err
	}
	if err := n.waitLaunched(ctx, hc, uuid, registry.StateRunning, time.Minute); err != nil {
		return err
	}

	plan := changePlan(changes, svcs)
	pid := n.reg.Pid()
	settle := 2 * time.Second
	if err := sleepCtx(ctx, settle); err != nil {
		return err
	}

	// Baseline: the changes with no reader and no callback.
	r.say("baseline: %d changes, no reader, no callback", changes)
	base, err := n.changeRun(ctx, hc, pid, plan, nil, settle, 0)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}

	// The readers and the callbacks.
	sctx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	var readers, receivers []*evSink
	var rwg sync.WaitGroup
	defer rwg.Wait()
	defer stopReaders()
	streamHC := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: evReaders}}
	defer streamHC.CloseIdleConnections()
	for i := range evReaders {
		s := newSink(fmt.Sprintf("reader %d", i+1))
		readers = append(readers, s)
		ready := make(chan error, 1)
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			n.readEvents(sctx, streamHC, s, ready)
		}()
		select {
		case err := <-ready:
			if err != nil {
				return err
			}
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%s: no first heartbeat within 30 s", s.name)
		}
	}
	// The changes with the readers alone, to tell their cost from the
	// callbacks'.
	if err := n.marker(ctx, hc, svcs[0], readers, time.Minute); err != nil {
		return fmt.Errorf("before the changes with readers alone: %w", err)
	}
	r.say("%d changes with %d readers and no callback", changes, evReaders)
	alone, err := n.changeRun(ctx, hc, pid, plan, readers, settle, 3*time.Minute)
	if err != nil {
		return fmt.Errorf("with readers alone: %w", err)
	}
	for _, s := range readers {
		if miss, _, _ := s.tally(alone.ids); miss > 0 {
			r.failf("%d changes, readers alone: %s missed %d", changes, s.name, miss)
		}
	}
	var ids []string
	for i := range evCallbacks {
		s := newSink(fmt.Sprintf("callback %d", i+1))
		rc := newReceiver(s)
		srv := httptest.NewServer(rc)
		defer srv.Close()
		var cb struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		}
		if err := n.apiSend(ctx, hc, http.MethodPost, "/callbacks", map[string]string{"url": srv.URL + "/hooks/physarum"},
			http.StatusCreated, &cb); err != nil {
			return err
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(cb.Secret, "whsec_"))
		if err != nil || !strings.HasPrefix(cb.Secret, "whsec_") {
			return fmt.Errorf("callback %s: secret %q is not whsec_ and base64", cb.ID, cb.Secret)
		}
		rc.setKey(key)
		receivers = append(receivers, s)
		ids = append(ids, cb.ID)
	}
	sinks := append(append([]*evSink{}, readers...), receivers...)
	// Everyone hears a marker before the measurements start.
	if err := n.marker(ctx, hc, svcs[0], sinks, time.Minute); err != nil {
		return fmt.Errorf("before the latency samples: %w", err)
	}

	// 1. Latency: desired counts, one at a time.
	r.say("latency: %d desired counts written one at a time, then %d stop/start pairs of a launched instance", latSamples, actions)
	var rdLat, cbLat, posts dist
	for i := range latSamples {
		t0 := time.Now()
		d, err := n.scaleOn(ctx, hc, svcs[i%len(svcs)], 1+i%3)
		if err != nil {
			return err
		}
		posts = append(posts, time.Since(t0))
		id := registry.EventID(d.Revision, 0)
		if err := waitSeen(ctx, sinks, id, 10*time.Second); err != nil {
			r.failf("latency sample %d: %v", i+1, err)
		}
		for _, s := range sinks {
			if at, ok := s.first(id); ok {
				if s.callback() {
					cbLat = append(cbLat, at.Sub(d.SetAt))
				} else {
					rdLat = append(rdLat, at.Sub(d.SetAt))
				}
			}
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	target := lt(100, "< 100 ms median on loopback (issue 14)")
	for _, x := range []struct {
		who string
		d   dist
	}{{fmt.Sprintf("%d stream readers", evReaders), rdLat}, {fmt.Sprintf("%d callbacks", evCallbacks), cbLat}} {
		r.fig(Figure{Name: "desired count written → its event at " + x.who + ", p50", Value: msec(x.d.p50()), Unit: "ms",
			Samples: len(x.d), Target: target, Note: "from the record's set_at (registry-service's clock, before its etcd put) to the line or POST received"})
		r.fig(Figure{Name: "the same, " + x.who + ", p90", Value: msec(x.d.at(90)), Unit: "ms", Samples: len(x.d)})
		r.fig(Figure{Name: "the same, " + x.who + ", p99", Value: msec(x.d.p99()), Unit: "ms", Samples: len(x.d)})
		r.fig(Figure{Name: "the same, " + x.who + ", max", Value: msec(x.d.at(100)), Unit: "ms", Samples: len(x.d)})
	}
	r.notef("Desired-count latency: %d writes (POST /service/<name>/scale, its answer p50 %.2f ms, p99 %.2f ms), one at a "+
		"time, each waited for at every reader and receiver; a sample per write and per reader or callback.",
		latSamples, msec(posts.p50()), msec(posts.p99()))

	// Real state changes: the launched instance stopped and started.
	var rdAct, cbAct, rdSent, cbSent, took dist
	for i := range 2 * actions {
		action, state := registry.ActionStop, registry.StateStopped
		if i%2 == 1 {
			action, state = registry.ActionStart, registry.StateRunning
		}
		t0 := time.Now()
		var li registry.LaunchedInstance
		if err := n.apiSend(ctx, hc, http.MethodPost, "/instances/"+uuid+"/actions", map[string]string{"action": action},
			http.StatusOK, &li); err != nil {
			return err
		}
		t1 := time.Now()
		took = append(took, t1.Sub(t0))
		if li.State != state {
			r.failf("%s answered state %q, want %q", action, li.State, state)
		}
		if err := waitFor(ctx, 15*time.Second, func() bool {
			for _, s := range sinks {
				if _, ok := s.stateAfter(uuid, state, t0); !ok {
					return false
				}
			}
			return true
		}); err != nil {
			r.failf("%s of %s: not every reader and callback heard %q within 15 s", action, uuid, state)
		}
		for _, s := range sinks {
			at, ok := s.stateAfter(uuid, state, t0)
			if !ok {
				continue
			}
			if s.callback() {
				cbAct, cbSent = append(cbAct, at.Sub(t1)), append(cbSent, at.Sub(t0))
			} else {
				rdAct, rdSent = append(rdAct, at.Sub(t1)), append(rdSent, at.Sub(t0))
			}
		}
	}
	for _, x := range []struct {
		who       string
		ans, sent dist
	}{{fmt.Sprintf("%d stream readers", evReaders), rdAct, rdSent}, {fmt.Sprintf("%d callbacks", evCallbacks), cbAct, cbSent}} {
		r.fig(Figure{Name: "instance stopped or started (lifecycle action) → its launched event at " + x.who + ", from the action's answer, p50",
			Value: msec(x.ans.p50()), Unit: "ms", Samples: len(x.ans), Target: target,
			Note: "negative: the event arrived before the answer (the record is written before the action answers)"})
		r.fig(Figure{Name: "the same, " + x.who + ", p90", Value: msec(x.ans.at(90)), Unit: "ms", Samples: len(x.ans)})
		r.fig(Figure{Name: "the same, " + x.who + ", p99", Value: msec(x.ans.p99()), Unit: "ms", Samples: len(x.ans)})
		r.fig(Figure{Name: "the same, " + x.who + ", max", Value: msec(x.ans.at(100)), Unit: "ms", Samples: len(x.ans)})
		r.fig(Figure{Name: "the same, " + x.who + ", from the action's request, p50", Value: msec(x.sent.p50()), Unit: "ms",
			Samples: len(x.sent), Baseline: &Baseline{Name: "the action itself, request to answer, p50", Value: msec(took.p50()), Unit: "ms"}})
	}
	r.notef("Lifecycle latency: %d stop and %d start actions (POST /instances/<uuid>/actions) on one launched hello instance, "+
		"one at a time; the event timed is the launched record's first event in the action's final state (stopped, running) "+
		"at each reader and receiver. The action answers once done: its final record is written, read again, then answered, so "+
		"\"from the answer\" is a lower bound (it can be negative) and \"from the request\" an upper bound. Actions took: %s.",
		actions, actions, durations(took))
	if err := n.apiSend(ctx, hc, http.MethodDelete, "/instances/"+uuid, nil, http.StatusOK, nil); err != nil {
		return err
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return err
	}
	if err := n.marker(ctx, hc, svcs[0], sinks, time.Minute); err != nil {
		return fmt.Errorf("before the changes: %w", err)
	}
	for _, s := range sinks {
		s.resetCounts()
	}

	// 2. The changes with 10 readers and 10 callbacks.
	r.say("%d changes with %d readers and %d callbacks", changes, evReaders, evCallbacks)
	m0, _ := scrape(ctx, hc, n.metrics)
	loaded, err := n.changeRun(ctx, hc, pid, plan, sinks, settle, 3*time.Minute)
	if err != nil {
		return fmt.Errorf("with readers and callbacks: %w", err)
	}
	m1, _ := scrape(ctx, hc, n.metrics)
	evChangeFigures(r, changes, loaded, base, readers, receivers)
	r.fig(Figure{Name: fmt.Sprintf("registry-service CPU over the same %d changes, %d readers and no callback", changes, evReaders),
		Value: alone.cpu.Seconds(), Unit: "s", Note: fmt.Sprintf("window %s; written in %s; max RSS %.1f MB; every reader had every event %.3f s after the last answer",
			alone.window.Round(time.Millisecond), alone.writes.Round(time.Millisecond), alone.maxRSS, alone.readersDone)})

	var cbs []struct {
		ID        string `json:"id"`
		Delivered int    `json:"delivered"`
		Pending   int    `json:"pending"`
		LastError string `json:"last_error"`
	}
	if err := n.apiGet(ctx, hc, "/callbacks", &cbs); err != nil {
		r.failf("GET /callbacks: %v", err)
	}
	var states []string
	for _, cb := range cbs {
		s := fmt.Sprintf("%s delivered %d, pending %d", cb.ID, cb.Delivered, cb.Pending)
		if cb.LastError != "" {
			s += ", last error " + cb.LastError
		}
		states = append(states, s)
	}
	if m0 != nil && m1 != nil {
		ok := m1.by("physarum_callbacks_deliveries_total", "outcome")["ok"] - m0.by("physarum_callbacks_deliveries_total", "outcome")["ok"]
		failed := m1.by("physarum_callbacks_deliveries_total", "outcome")["failed"] - m0.by("physarum_callbacks_deliveries_total", "outcome")["failed"]
		lat := (m1.sum("physarum_callbacks_delivery_latency_seconds_sum") - m0.sum("physarum_callbacks_delivery_latency_seconds_sum")) /
			(m1.sum("physarum_callbacks_delivery_latency_seconds_count") - m0.sum("physarum_callbacks_delivery_latency_seconds_count"))
		emitted := m1.sum("physarum_events_emitted_total") - m0.sum("physarum_events_emitted_total")
		r.notef("registry-service's own metrics over the run with readers and callbacks: deliveries ok %.0f, failed %.0f; mean "+
			"delivery latency (event read by the worker → 2xx) %.1f ms; events sent to stream readers %.0f; etcd writes "+
			"(mvcc put + delete) %.0f (the changes, and each callback's cursor stored after every delivery).",
			ok, failed, 1000*lat, emitted,
			m1.sum("etcd_mvcc_put_total")+m1.sum("etcd_mvcc_delete_total")-m0.sum("etcd_mvcc_put_total")-m0.sum("etcd_mvcc_delete_total"))
	}
	r.notef("Callbacks after the run (GET /callbacks): %s.", strings.Join(states, "; "))

	// The baseline again, everything detached, to show what drifts.
	stopReaders()
	rwg.Wait()
	for _, id := range ids {
		if err := n.apiSend(ctx, hc, http.MethodDelete, "/callbacks/"+id, nil, http.StatusOK, nil); err != nil {
			return err
		}
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return err
	}
	r.say("baseline again: %d changes, no reader, no callback", changes)
	after, err := n.changeRun(ctx, hc, pid, plan, nil, settle, 0)
	if err != nil {
		return fmt.Errorf("baseline after: %w", err)
	}
	r.notef("Baseline after the run, the readers closed and the callbacks deleted: %d changes in %s (%.0f/s), CPU %.2f s over "+
		"%s, max RSS %.1f MB (before the run: %.2f s over %s, %.1f MB).", changes, after.writes.Round(time.Millisecond),
		after.rate(), after.cpu.Seconds(), after.window.Round(time.Millisecond), after.maxRSS,
		base.cpu.Seconds(), base.window.Round(time.Millisecond), base.maxRSS)
	r.notef("CPU is utime+stime of the registry-service (etcd embedded, the callbacks' delivery worker, the stream handlers) "+
		"from /proc/<pid>/stat, from the first change to %s after the last change's answer (baseline) or the last reader's "+
		"line and callback's delivery of them; max RSS the highest VmRSS of /proc/<pid>/status read every 50 ms over the same "+
		"window. The readers and receivers run in the bench process, on the same 2 cores.", settle)
	for _, s := range sinks {
		if b, msg := s.problems(); b > 0 {
			r.failf("%s: %d bad deliveries or lines; first: %s", s.name, b, msg)
		}
		if s.restarts() > 0 {
			r.failf("%s: its stream ended %d times and was resumed", s.name, s.restarts())
		}
	}
	if k, top := problemSummary([]*launch.Proc{n.reg}, 4); k > 0 {
		r.notef("registry-service logged %d error and warning lines: %s", k, strings.Join(top, "; "))
	}
	return nil
}

// evChangeFigures records what the run of the changes with readers and
// callbacks showed, beside the baseline.
func evChangeFigures(r *run, changes int, loaded, base *changeResult, readers, receivers []*evSink) {
	for _, x := range []struct {
		who   string
		sinks []*evSink
	}{{"stream readers", readers}, {"callbacks", receivers}} {
		lost, dups, disorder, worst := 0, 0, 0, ""
		for _, s := range x.sinks {
			miss, dup, dis := s.tally(loaded.ids)
			lost, dups, disorder = lost+miss, dups+dup, disorder+dis
			if miss > 0 && worst == "" {
				worst = fmt.Sprintf("%s missed %d", s.name, miss)
			}
		}
		r.fig(Figure{Name: fmt.Sprintf("%d changes, %d %s: events lost (summed over them)", changes, len(x.sinks), x.who),
			Value: float64(lost), Unit: "events", Target: lt(1, "none lost"), Note: worst})
		r.fig(Figure{Name: fmt.Sprintf("%d changes, %d %s: duplicates received (summed)", changes, len(x.sinks), x.who),
			Value: float64(dups), Unit: "events"})
		r.fig(Figure{Name: fmt.Sprintf("%d changes, %d %s: out of order (summed)", changes, len(x.sinks), x.who),
			Value: float64(disorder), Unit: "events"})
		if lost > 0 {
			r.failf("%d changes: %s lost %d events in all (%s)", changes, x.who, lost, worst)
		}
	}
	r.fig(Figure{Name: fmt.Sprintf("%d changes: written (POST /service/<name>/scale, one after another, as fast as the API answers)", changes),
		Value: secs(loaded.writes), Unit: "s", Note: fmt.Sprintf("%.0f changes/s", loaded.rate()),
		Baseline: &Baseline{Name: "the same, no reader and no callback", Value: secs(base.writes), Unit: "s"}})
	r.fig(Figure{Name: "one change (scale POST) during the run, p50", Value: msec(loaded.posts.p50()), Unit: "ms", Samples: len(loaded.posts),
		Baseline: &Baseline{Name: "no reader and no callback", Value: msec(base.posts.p50()), Unit: "ms"}})
	r.fig(Figure{Name: "one change during the run, p99", Value: msec(loaded.posts.p99()), Unit: "ms", Samples: len(loaded.posts),
		Baseline: &Baseline{Name: "no reader and no callback", Value: msec(base.posts.p99()), Unit: "ms"}})
	r.fig(Figure{Name: "backlog drained: the last change's answer → every reader has every event", Value: loaded.readersDone, Unit: "s"})
	r.fig(Figure{Name: "backlog drained: the last change's answer → every callback has every event (the last delivery)", Value: loaded.callbacksDone, Unit: "s"})
	r.fig(Figure{Name: fmt.Sprintf("registry-service CPU over the run, %d readers and %d callbacks", evReaders, evCallbacks),
		Value: loaded.cpu.Seconds(), Unit: "s", Note: fmt.Sprintf("window %s", loaded.window.Round(time.Millisecond)),
		Baseline: &Baseline{Name: fmt.Sprintf("the same %d changes, no reader and no callback (window %s)", changes, base.window.Round(time.Millisecond)),
			Value: base.cpu.Seconds(), Unit: "s"}})
	r.fig(Figure{Name: "registry-service CPU per change, with readers and callbacks", Value: 1000 * loaded.cpu.Seconds() / float64(changes), Unit: "ms",
		Baseline: &Baseline{Name: "no reader and no callback", Value: 1000 * base.cpu.Seconds() / float64(changes), Unit: "ms"}})
	r.fig(Figure{Name: "registry-service max RSS over the run, with readers and callbacks", Value: loaded.maxRSS, Unit: "MB",
		Baseline: &Baseline{Name: "no reader and no callback", Value: base.maxRSS, Unit: "MB"}})
}

// changePlan is the changes of a run: desired counts on evCompute, the
// services in turn, each count different from the service's last.
func changePlan(changes int, svcs []string) []planned {
	out := make([]planned, changes)
	for i := range out {
		out[i] = planned{svcs[i%len(svcs)], 1 + (i/len(svcs))%3}
	}
	return out
}

type planned struct {
	service string
	number  int
}

// changeResult is one run of the changes.
type changeResult struct {
	ids                        []string // the events the changes made
	posts                      dist
	writes                     time.Duration // first change sent → last answered
	readersDone, callbacksDone float64       // s from the last answer until all heard (notMeasured: never)
	cpu                        time.Duration
	window                     time.Duration
	maxRSS                     float64 // MB
}

func (c *changeResult) rate() float64 { return float64(len(c.ids)) / c.writes.Seconds() }

// changeRun writes plan's changes one after another and, with sinks,
// waits (up to drain) until every sink has every event; it measures the
// registry-service (pid) from the first change to settle after the end.
func (n *network) changeRun(ctx context.Context, hc *http.Client, pid int, plan []planned, sinks []*evSink,
	settle, drain time.Duration) (*changeResult, error) {
	res := &changeResult{}
	rss := newRSSSampler(pid, 50*time.Millisecond)
	_, cpu0, err := statOf(pid)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for _, p := range plan {
		t := time.Now()
		d, err := n.scaleOn(ctx, hc, p.service, p.number)
		if err != nil {
			rss.stop()
			return nil, err
		}
		res.posts = append(res.posts, time.Since(t))
		res.ids = append(res.ids, registry.EventID(d.Revision, 0))
	}
	last := time.Now()
	res.writes = last.Sub(start)
	if len(sinks) > 0 {
		var readers, callbacks []*evSink
		for _, s := range sinks {
			if s.callback() {
				callbacks = append(callbacks, s)
			} else {
				readers = append(readers, s)
			}
		}
		want := map[string]bool{}
		for _, id := range res.ids {
			want[id] = true
		}
		res.readersDone, res.callbacksDone = notMeasured, notMeasured
		_ = waitFor(ctx, drain, func() bool {
			now := time.Since(last).Seconds()
			if !measured(res.readersDone) && allHave(readers, want) {
				res.readersDone = now
			}
			if !measured(res.callbacksDone) && allHave(callbacks, want) {
				res.callbacksDone = now
			}
			return measured(res.readersDone) && measured(res.callbacksDone)
		})
	}
	if err := sleepCtx(ctx, settle); err != nil {
		rss.stop()
		return nil, err
	}
	_, cpu1, err := statOf(pid)
	res.window = time.Since(start)
	res.maxRSS = rss.stop()
	if err != nil {
		return nil, err
	}
	res.cpu = cpu1 - cpu0
	return res, nil
}

// allHave says whether every sink has heard every id of want.
func allHave(sinks []*evSink, want map[string]bool) bool {
	for _, s := range sinks {
		if s.count(want) < len(want) {
			return false
		}
	}
	return true
}

// rssSampler reads a process's VmRSS every period and keeps the highest.
type rssSampler struct {
	done chan struct{}
	max  chan float64
}

func newRSSSampler(pid int, period time.Duration) *rssSampler {
	s := &rssSampler{done: make(chan struct{}), max: make(chan float64, 1)}
	go func() {
		peak := notMeasured
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if rss, _, err := memOf(pid); err == nil {
				peak = higher(peak, mb(rss))
			}
			select {
			case <-s.done:
				s.max <- peak
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the highest RSS seen, in MB.
func (s *rssSampler) stop() float64 {
	close(s.done)
	return <-s.max
}

// scaleOn sets service's desired count on evCompute through the HTTP API
// and returns the count as stored (its revision is its event's index).
func (n *network) scaleOn(ctx context.Context, hc *http.Client, service string, number int) (registry.Desired, error) {
	var ans struct {
		Desired registry.Desired `json:"desired"`
	}
	err := n.apiSend(ctx, hc, http.MethodPost, "/service/"+service+"/scale",
		map[string]any{"number": number, "compute": evCompute}, http.StatusOK, &ans)
	if err == nil && ans.Desired.Revision == 0 {
		err = fmt.Errorf("scale %s: the answer has no revision", service)
	}
	return ans.Desired, err
}

// marker writes a desired count and waits until every sink has heard it.
func (n *network) marker(ctx context.Context, hc *http.Client, service string, sinks []*evSink, timeout time.Duration) error {
	d, err := n.scaleOn(ctx, hc, service, 0)
	if err != nil {
		return err
	}
	return waitSeen(ctx, sinks, registry.EventID(d.Revision, 0), timeout)
}

// apiSend sends a JSON request to the registry's HTTP API and decodes
// the answer into out (when not nil); any status but want is an error.
func (n *network) apiSend(ctx context.Context, hc *http.Client, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.api+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b[:min(len(b), 512)])))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// waitLaunched waits until a launched instance is in state.
func (n *network) waitLaunched(ctx context.Context, hc *http.Client, uuid, state string, timeout time.Duration) error {
	var li registry.LaunchedInstance
	err := waitFor(ctx, timeout, func() bool {
		return n.apiGet(ctx, hc, "/instances/"+uuid, &li) == nil && li.State == state
	})
	if err != nil {
		return fmt.Errorf("launched instance %s: not %s within %s (state %q, %s)", uuid, state, timeout, li.State, li.Message)
	}
	return nil
}

// waitFor calls done every 2 ms until it says yes, or fails after
// timeout.
func waitFor(ctx context.Context, timeout time.Duration, done func() bool) error {
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %s", timeout)
		}
		if err := sleepCtx(ctx, 2*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// waitSeen waits until every sink has heard event id.
func waitSeen(ctx context.Context, sinks []*evSink, id string, timeout time.Duration) error {
	err := waitFor(ctx, timeout, func() bool {
		for _, s := range sinks {
			if _, ok := s.first(id); !ok {
				return false
			}
		}
		return true
	})
	if err != nil {
		var missing []string
		for _, s := range sinks {
			if _, ok := s.first(id); !ok {
				missing = append(missing, s.name)
			}
		}
		return fmt.Errorf("event %s not heard within %s by %s", id, timeout, strings.Join(missing, ", "))
	}
	return nil
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := fmt.Sprintf("%x", b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// evLine is one line of the event stream, or the body of one delivery.
type evLine struct {
	ID     string          `json:"id"`
	Index  int64           `json:"index"`
	Type   string          `json:"type"`
	Topic  string          `json:"topic"`
	Key    string          `json:"key"`
	Code   string          `json:"code"`
	Msg    string          `json:"message"`
	Object json.RawMessage `json:"object"`
}

// evRec is one event as a sink heard it.
type evRec struct {
	id, key, state string
	at             time.Time
}

// evSink is a stream reader or a callback's receiver: what it heard, and
// when.
type evSink struct {
	name string

	mu       sync.Mutex
	seen     map[string][]time.Time // event id → each arrival
	launched []evRec                // launched instances' events
	last     [2]int64               // the last event's index and number
	disorder int
	bad      int
	badMsg   string
	resumed  int
}

func newSink(name string) *evSink { return &evSink{name: name, seen: map[string][]time.Time{}} }

func (s *evSink) callback() bool { return strings.HasPrefix(s.name, "callback") }

// add records an event heard at at.
func (s *evSink) add(e evLine, at time.Time) {
	var obj struct {
		State string `json:"state"`
	}
	if e.Topic == registry.TopicLaunched {
		_ = json.Unmarshal(e.Object, &obj)
	}
	index, k, ok := registry.ParseEventID(e.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		s.badLocked("event id %q does not parse", e.ID)
		return
	}
	prior := len(s.seen[e.ID])
	s.seen[e.ID] = append(s.seen[e.ID], at)
	if prior == 0 && (index < s.last[0] || (index == s.last[0] && int64(k) <= s.last[1])) {
		s.disorder++
	}
	if prior == 0 {
		s.last = [2]int64{index, int64(k)}
	}
	if e.Topic == registry.TopicLaunched {
		s.launched = append(s.launched, evRec{id: e.ID, key: e.Key, state: obj.State, at: at})
	}
}

func (s *evSink) badf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.badLocked(format, args...)
}

func (s *evSink) badLocked(format string, args ...any) {
	s.bad++
	if s.badMsg == "" {
		s.badMsg = fmt.Sprintf(format, args...)
	}
}

func (s *evSink) problems() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad, s.badMsg
}

func (s *evSink) restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumed
}

// first is when event id first arrived.
func (s *evSink) first(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.seen[id]
	if len(ts) == 0 {
		return time.Time{}, false
	}
	return ts[0], true
}

// stateAfter is when the first event of launched instance uuid in state
// arrived after t0.
func (s *evSink) stateAfter(uuid, state string, t0 time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.launched {
		if e.key == uuid && e.state == state && e.at.After(t0) {
			return e.at, true
		}
	}
	return time.Time{}, false
}

// count is how many of want's ids have arrived.
func (s *evSink) count(want map[string]bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := 0
	for id := range want {
		if len(s.seen[id]) > 0 {
			k++
		}
	}
	return k
}

// tally counts ids missing and arrivals beyond the first, and the events
// that arrived out of order since the last resetCounts.
func (s *evSink) tally(ids []string) (missing, dups, disorder int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		switch k := len(s.seen[id]); {
		case k == 0:
			missing++
		case k > 1:
			dups += k - 1
		}
	}
	return missing, dups, s.disorder
}

func (s *evSink) resetCounts() {
	s.mu.Lock()
	s.disorder = 0
	s.mu.Unlock()
}

// readEvents reads GET /v1/events (every topic, from now) into s until
// ctx ends, resuming from the last index when the stream ends; ready
// hears nil once the first heartbeat arrived, or the first error.
func (n *network) readEvents(ctx context.Context, hc *http.Client, s *evSink, ready chan<- error) {
	index := int64(0)
	first := true
	for ctx.Err() == nil {
		err := n.stream(ctx, hc, s, &index, func() {
			if first {
				first = false
				ready <- nil
			}
		})
		if ctx.Err() != nil {
			return
		}
		if first {
			ready <- err
			return
		}
		s.mu.Lock()
		s.resumed++
		s.mu.Unlock()
		s.badf("stream ended: %v", err)
		_ = sleepCtx(ctx, 100*time.Millisecond)
	}
}

// stream reads one answer of GET /v1/events after *index.
func (n *network) stream(ctx context.Context, hc *http.Client, s *evSink, index *int64, started func()) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.api+"/v1/events?index="+strconv.FormatInt(*index, 10), nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET /v1/events: status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		at := time.Now()
		var e evLine
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			s.badf("line %.100q: %v", sc.Text(), err)
			continue
		}
		switch e.Type {
		case registry.EventHeartbeat:
			*index = max(*index, e.Index)
			started()
		case "error":
			return fmt.Errorf("error line: %s: %s", e.Code, e.Msg)
		default:
			s.add(e, at)
			*index = max(*index, e.Index)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// receiver is a callback's endpoint: it checks each delivery as a
// Standard Webhooks receiver does (the signature over id.timestamp.body
// with the secret, the timestamp within 5 minutes) and records it.
type receiver struct {
	sink  *evSink
	ready chan struct{} // closed once key is set
	key   []byte
}

func newReceiver(s *evSink) *receiver { return &receiver{sink: s, ready: make(chan struct{})} }

// setKey sets the callback's key, known once its creation has answered;
// deliveries that come before wait for it.
func (rc *receiver) setKey(k []byte) {
	rc.key = k
	close(rc.ready)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read the body", http.StatusBadRequest)
		return
	}
	select {
	case <-rc.ready:
	case <-time.After(5 * time.Second):
		rc.sink.badf("a delivery came and the callback's creation had not answered 5 s later")
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	key := rc.key
	id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
	if !verifySignature(key, id, ts, body, req.Header.Get("webhook-signature")) {
		rc.sink.badf("event %s: bad signature %q", id, req.Header.Get("webhook-signature"))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || at.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		rc.sink.badf("event %s: timestamp %q out of tolerance", id, ts)
		http.Error(w, "bad timestamp", http.StatusBadRequest)
		return
	}
	var e evLine
	if err := json.Unmarshal(body, &e); err != nil || e.ID != id {
		rc.sink.badf("event %s: body %.100q: %v", id, body, err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rc.sink.add(e, at)
	w.WriteHeader(http.StatusNoContent)
}

// verifySignature checks a webhook-signature header (space-separated
// "v1,<base64>" signatures) against HMAC-SHA256 of id.timestamp.body.
func verifySignature(key []byte, id, ts string, body []byte, header string) bool {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(header) {
		v, b64, ok := strings.Cut(sig, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}
