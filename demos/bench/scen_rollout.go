package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// The rollout scenario's load: 200 req/s through the client proxy, half
// over kept-alive connections and half on a new connection each.
const (
	roRate   = 200
	roSteady = 10 * time.Second // steady load measured before each update
	roTail   = 2 * time.Second  // load kept on after the rollout ends
	roPoll   = 100 * time.Millisecond
)

// roCase is one update of the scenario.
type roCase struct {
	instances   int
	maxParallel int
	crash       bool // the new version is /bin/false: measure the revert
	blueGreen   bool // -strategy blue-green, with a 5 s rollback window
	rollback    bool // blue-green, rolled back 3 s after the switch
}

func (c roCase) label() string {
	switch {
	case c.crash:
		return fmt.Sprintf("%d instances, a version that crashes at start", c.instances)
	case c.rollback:
		return fmt.Sprintf("%d instances, blue-green, rolled back inside the window", c.instances)
	case c.blueGreen:
		return fmt.Sprintf("%d instances, blue-green", c.instances)
	}
	return fmt.Sprintf("%d instances, -max-parallel %d", c.instances, c.maxParallel)
}

// updateArgs are registry-cli update's options for the case.
func (c roCase) updateArgs() []string {
	switch {
	case c.rollback:
		return []string{"-strategy", "blue-green", "-rollback-window", "10m"}
	case c.blueGreen:
		return []string{"-strategy", "blue-green", "-rollback-window", roWindow.String()}
	}
	return []string{"-max-parallel", fmt.Sprint(c.maxParallel)}
}

// roWindow is the blue-green case's rollback window: the old set stands
// by this long after the switch, then stops.
const roWindow = 5 * time.Second

// runRollout measures rolling updates under load: a process service of 3
// (and 6) pinned instances under a steady 200 req/s through a client proxy
// (keep-alive and new connections), rolled to a new version (its Exec env
// changed) with registry-cli update: the failed requests, the latency
// p50/p99 during the rollout against the steady load before it, the
// rollout's duration and each step's; with -max-parallel 1 and 3; and a
// version that crashes at start, until it is reverted. -quick keeps the
// first update only.
func runRollout(ctx context.Context, r *run) error {
	n, err := r.s.newNetwork(r, "rollout", false)
	if err != nil {
		return err
	}
	defer n.close()
	cases := []roCase{{instances: 3, maxParallel: 1}, {instances: 3, blueGreen: true}}
	if !r.quick() {
		cases = append(cases, roCase{instances: 3, maxParallel: 3}, roCase{instances: 6, maxParallel: 1},
			roCase{instances: 3, maxParallel: 1, crash: true}, roCase{instances: 3, blueGreen: true, rollback: true})
	}
	r.sc.Setup = fmt.Sprintf("1 registry-service (the reconciler's leader, which carries out the rollouts), 3 allocators (process "+
		"runtime, -cpus 1, -memory 1024, -max-restarts 1), 1 client proxy; the service is hello (CpuReq 50, MemoryReq 16, no RTT requirement) at a "+
		"desired count, each update registry-cli update with a changed Exec env (HELLO_VERSION) and the default strategy "+
		"(min-healthy 5s, healthy-deadline 1m, auto-revert) but -max-parallel, or -strategy blue-green with a rollback window of "+
		roWindow.String()+" (10m when rolled back inside it); an open-loop load of GET / through the client proxy "+
		"at %d req/s, half over kept-alive connections and half on a new connection each; %s of steady load before each update "+
		"is the baseline; status read every %s; %s.", roRate, roSteady, roPoll, n.timing())
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	var specs []allocSpec
	for i := 1; i <= 3; i++ {
		specs = append(specs, allocSpec{name: fmt.Sprintf("a%d", i), runtime: "process", cpus: "1", memory: 1024,
			extra: []string{"-max-restarts", "1"}})
	}
	if _, err := n.startAllocators(ctx, specs...); err != nil {
		return err
	}
	cfg, err := n.roConfig(0)
	if err != nil {
		return err
	}
	if _, err := n.cli(ctx, "add", cfg, "hello"); err != nil {
		return err
	}
	cp, err := n.proxyOnceListed(ctx, len(specs))
	if err != nil {
		return err
	}
	hc := newHTTPClient(30 * time.Second)
	defer hc.CloseIdleConnections()
	next := 1
	for _, cs := range cases {
		err := rolloutRun(ctx, r, n, hc, cp.url, cs, &next)
		if err != nil {
			r.failf("%s: %v", cs.label(), err)
		}
		if ctx.Err() != nil {
			return err
		}
	}
	r.notef("The update starts when registry-cli update is run and ends when status shows the rollout succeeded (or " +
		"reverted); \"during\" is that span. A step is one new instance: \"new running\" is the first status read showing it " +
		"running, an old one stopped the first read showing it stopping (or gone). Each new instance runs 5 s (min-healthy) " +
		"before an old one stops for it. A blue-green update starts the whole new set, switches every proxy once it has run 5 s, " +
		"and stops the old set after the window; its switch gap is the send time of the last request an old instance answered " +
		"minus that of the first a new one answered (negative: no overlap; the load's two clients are independent, so a few ms " +
		"of overlap is the switch reaching the proxy between two sends).")
	return nil
}

// roConfig writes hello's process config with HELLO_VERSION=v (0: none),
// or /bin/false as the command when v < 0.
func (n *network) roConfig(v int) (string, error) {
	exec := map[string]any{"Command": n.bin("hello")}
	if v > 0 {
		exec["Env"] = map[string]string{"HELLO_VERSION": fmt.Sprint(v)}
	}
	if v < 0 {
		exec["Command"] = "/bin/false"
	}
	// No RTT requirement: on a loaded machine a hard RTT of 50 ms was
	// missed, and the client proxy started instances on demand.
	b, err := json.Marshal(map[string]any{"CpuReq": 50, "MemoryReq": 16, "Exec": exec})
	if err != nil {
		return "", err
	}
	path := filepath.Join(n.dir, fmt.Sprintf("hello-%d.json", max(v, 0)))
	if v < 0 {
		path = filepath.Join(n.dir, "hello-crash.json")
	}
	return path, os.WriteFile(path, b, 0o644)
}

// rolloutRun scales hello to the case's count, puts the load on, and
// rolls it to the next version.
func rolloutRun(ctx context.Context, r *run, n *network, hc *http.Client, proxyURL string, cs roCase, next *int) error {
	label := cs.label()
	if err := n.apiScale(ctx, hc, "hello", "", cs.instances); err != nil {
		return err
	}
	if _, _, err := n.waitStatus(ctx, hc, "hello", 2*time.Minute, func(st registry.ServiceStatus) bool {
		return st.RunningResources == cs.instances && pinnedLeft(st) == cs.instances &&
			(st.Rollout == nil || st.Rollout.State != registry.RolloutRunning)
	}); err != nil {
		return fmt.Errorf("%d instances before the update: %w", cs.instances, err)
	}
	w := startRoWatch(ctx, r, n, hc, label)
	defer w.stop()
	ka, fresh := startRoLoad(ctx, proxyURL+"/hello/", roRate/2, true), startRoLoad(ctx, proxyURL+"/hello/", roRate/2, false)
	defer ka.stop()
	defer fresh.stop()
	load := func(t0, t1 time.Time) asReqs { return append(ka.between(t0, t1), fresh.between(t0, t1)...) }
	if err := sleepCtx(ctx, roSteady); err != nil {
		return err
	}
	*next++
	v := *next
	if cs.crash {
		v = -1
	}
	cfg, err := n.roConfig(v)
	if err != nil {
		return err
	}
	pre := w.last()
	t0 := time.Now()
	out, err := n.cli(ctx, append(append([]string{"update"}, cs.updateArgs()...), cfg, "hello")...)
	if err != nil {
		return err
	}
	r.say("%s: %s", label, strings.TrimSpace(out))
	var switched, back time.Time
	if cs.blueGreen {
		p, err := w.waitFor(ctx, 4*time.Minute, func(p roPoint) bool {
			return p.rollout != nil && p.rollout.From >= pre.version && !p.rollout.Switched.IsZero()
		})
		if err != nil {
			return err
		}
		switched = p.at
		r.fig(Figure{Name: label + ": update → every proxy switched (status shows the switch)", Value: switched.Sub(t0).Seconds(), Unit: "s",
			Note: "the new set started, ran min-healthy 5 s, and the route changed"})
	}
	if cs.rollback {
		if err := sleepCtx(ctx, 3*time.Second); err != nil {
			return err
		}
		back = time.Now()
		out, err := n.cli(ctx, "rollback", "hello")
		if err != nil {
			return err
		}
		r.say("%s: %s", label, strings.TrimSpace(out))
	}
	end, err := w.waitFor(ctx, 4*time.Minute, func(p roPoint) bool {
		ro := p.rollout
		if ro == nil || ro.From < pre.version || ro.State == registry.RolloutRunning {
			return false
		}
		return !(cs.crash || cs.rollback) || ro.RevertOf != 0
	})
	if err != nil {
		return err
	}
	if cs.crash || cs.rollback {
		*next += 2 // the new version and the revert's
	}
	if err := sleepCtx(ctx, roTail); err != nil {
		return err
	}
	ka.stop()
	fresh.stop()
	w.stop()
	t1 := end.at
	before, during, after := load(t0.Add(-roSteady), t0), load(t0, t1), load(t1, t1.Add(roTail))
	baseLat, baseFailed, _ := before.stats()
	_, failed, sample := append(slices.Clone(during), after...).stats()
	durLat, _, _ := during.stats()
	ro := end.rollout
	r.say("%s: rollout %d → %d %s after %.1f s: %s", label, ro.From, ro.To, ro.State, t1.Sub(t0).Seconds(), ro.Message)
	want := registry.RolloutSucceeded
	if cs.crash || cs.rollback {
		want = registry.RolloutReverted
	}
	stateNote := fmt.Sprintf("rollout %d → %d %s: %s", ro.From, ro.To, ro.State, ro.Message)
	if ro.State != want {
		r.failf("%s: %s (want %s)", label, stateNote, want)
	}
	name := label
	what := "update → succeeded (status)"
	switch {
	case cs.crash:
		what = "update → reverted and the revert succeeded (status)"
	case cs.rollback:
		what = "update → switched → rolled back → reverted (status)"
	case cs.blueGreen:
		what = "update → switched → window over, old set stopped → succeeded (status)"
	}
	r.fig(Figure{Name: name + ": rollout duration, " + what, Value: t1.Sub(t0).Seconds(), Unit: "s",
		Note: fmt.Sprintf("%s; the rollout's own record: started %s, finished %.1f s later", stateNote,
			ro.Started.Local().Format("15:04:05.000"), ro.Finished.Sub(ro.Started).Seconds())})
	r.fig(Figure{Name: name + ": failed requests during the rollout and 2 s after", Value: float64(failed), Unit: "requests",
		Samples: len(during) + len(after), Target: lt(0.5, "0"), Note: sample})
	base := func(q quantile) *Baseline {
		return &Baseline{Name: fmt.Sprintf("the %s of steady %d req/s before the update", roSteady, roRate), Value: msec(q), Unit: "ms"}
	}
	r.fig(Figure{Name: name + ": request latency p50 during the rollout", Value: msec(durLat.p50()), Unit: "ms", Samples: len(durLat),
		Baseline: base(baseLat.p50())})
	r.fig(Figure{Name: name + ": request latency p99 during the rollout", Value: msec(durLat.p99()), Unit: "ms", Samples: len(durLat),
		Baseline: base(baseLat.p99())})
	if cs.blueGreen {
		all := append(slices.Clone(during), after...)
		isOld := func(v int) bool { return v == pre.version }
		isNew := func(v int) bool { return v == ro.To }
		if cs.rollback {
			isNew = func(v int) bool { return v == ro.From } // the version rolled back from
		}
		upTo := all
		if cs.rollback { // the switch, not the rollback's way back
			upTo = slices.DeleteFunc(slices.Clone(all), func(q asReq) bool { return !q.at.Before(back) })
		}
		r.fig(Figure{Name: label + ": switch gap, old → new", Value: msec(w.switchGap(upTo, t0, isOld, isNew)), Unit: "ms",
			Note: "the last request an old instance answered was sent this long after the first a new one answered (≤ 0: one point in time)"})
		if cs.rollback {
			r.fig(Figure{Name: label + ": switch gap of the rollback, new → old", Value: msec(w.switchGap(all, back, isNew, isOld)), Unit: "ms",
				Note: fmt.Sprintf("rollback run %.1f s after the switch", back.Sub(switched).Seconds())})
		}
	}
	if !cs.crash && !cs.blueGreen {
		steps := w.steps(t0, t1, ro)
		for i, s := range steps {
			r.fig(Figure{Name: fmt.Sprintf("%s: step %d, new instance running", name, i+1), Value: s.Seconds(), Unit: "s",
				Note: "from the update"})
		}
		if k := len(steps); k > 0 {
			r.fig(Figure{Name: name + ": mean time per step", Value: t1.Sub(t0).Seconds() / float64(k), Unit: "s",
				Note: fmt.Sprintf("%d new instances; old ones stopped at %s s from the update", k, w.stopped(t0, t1, pre.ids))})
		}
	}
	byVer := w.answersByVersion(append(slices.Clone(during), after...))
	lateOld := 0
	for _, q := range after {
		if v := w.versionOf(q.inst); q.inst != "" && !ro.Targets(v) {
			lateOld++
		}
	}
	r.notef("%s: %d requests in the %s before the update, %d failed; %d during the rollout (%d kept-alive, %d on new connections), %d failed; %d in the %s after it; "+
		"answers by version %s; %d answers after the end from an instance not of version %d; latency p99 %0.1f ms (p50 %0.1f) "+
		"during, %0.1f ms (p50 %0.1f) before", label, len(before), roSteady, baseFailed, len(during), len(ka.between(t0, t1)), len(fresh.between(t0, t1)), failed,
		len(after), roTail, byVer, lateOld, ro.To, msec(durLat.p99()), msec(durLat.p50()), msec(baseLat.p99()), msec(baseLat.p50()))
	return nil
}

// startRoLoad starts an asLoad at rate over kept-alive connections or
// (keepAlive false) a new connection per request.
func startRoLoad(ctx context.Context, url string, rate int, keepAlive bool) *asLoad {
	l := startAsLoad(ctx, url, 0)
	if !keepAlive {
		// Swapped before the rate is set: no request has been sent.
		l.hc = &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true, DisableKeepAlives: true},
			Timeout: 10 * time.Second}
	}
	l.setRate(rate)
	return l
}

// roPoint is one status read.
type roPoint struct {
	at      time.Time
	rollout *registry.Rollout
	version int            // the service's current version
	ids     []string       // pinned instances neither stopping nor gone
	running map[string]int // running pinned instances: id → version
}

// roWatch reads hello's status every roPoll, saying each change of the
// rollout's message.
type roWatch struct {
	mu       sync.Mutex
	points   []roPoint
	versions map[string]int // every instance seen: id → version
	stop     func()
}

func startRoWatch(ctx context.Context, r *run, n *network, hc *http.Client, label string) *roWatch {
	w := &roWatch{versions: map[string]int{}}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	w.stop = sync.OnceFunc(func() { cancel(); <-done })
	go func() {
		defer close(done)
		said := ""
		for ctx.Err() == nil {
			st, err := n.apiStatus(ctx, hc, "hello")
			if err == nil {
				p := roPoint{at: time.Now(), rollout: st.Rollout, running: map[string]int{}}
				w.mu.Lock()
				for _, in := range st.Instances {
					w.versions[in.ID] = in.Version
					p.version = max(p.version, in.Version)
					if in.OnDemand || in.Compute == "" {
						continue
					}
					if in.State == registry.StateStopping || in.State == registry.StateStopped || in.State == registry.StateFailed {
						continue
					}
					p.ids = append(p.ids, in.ID)
					if in.State == registry.StateRunning {
						p.running[in.ID] = in.Version
					}
				}
				w.points = append(w.points, p)
				w.mu.Unlock()
				if ro := st.Rollout; ro != nil && ro.State+ro.Message != said {
					said = ro.State + ro.Message
					r.say("%s: rollout %d → %d %s: %s", label, ro.From, ro.To, ro.State, ro.Message)
				}
			}
			_ = sleepCtx(ctx, roPoll)
		}
	}()
	return w
}

func (w *roWatch) last() roPoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.points) == 0 {
		return roPoint{}
	}
	return w.points[len(w.points)-1]
}

// waitFor waits for a read that ok accepts, from now on.
func (w *roWatch) waitFor(ctx context.Context, timeout time.Duration, ok func(roPoint) bool) (roPoint, error) {
	start := time.Now()
	for {
		w.mu.Lock()
		for _, p := range w.points {
			if !p.at.Before(start) && ok(p) {
				w.mu.Unlock()
				return p, nil
			}
		}
		w.mu.Unlock()
		if time.Since(start) > timeout {
			msg := "no rollout"
			if ro := w.last().rollout; ro != nil {
				msg = fmt.Sprintf("rollout %d → %d %s: %s", ro.From, ro.To, ro.State, ro.Message)
			}
			return roPoint{}, fmt.Errorf("the rollout did not end within %s: %s", timeout, msg)
		}
		if err := sleepCtx(ctx, roPoll); err != nil {
			return roPoint{}, err
		}
	}
}

// steps returns, for each new instance (of the rollout's target version)
// in the order they first ran, when the status first showed it running.
func (w *roWatch) steps(t0, t1 time.Time, ro *registry.Rollout) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	var out []time.Duration
	for _, p := range w.points {
		if p.at.Before(t0) || p.at.After(t1) {
			continue
		}
		for id, v := range p.running {
			if ro.Targets(v) && !seen[id] {
				seen[id] = true
				out = append(out, p.at.Sub(t0))
			}
		}
	}
	return out
}

// stopped says when each of the old pinned instances was first stopping
// or missing in status, in seconds from t0: "5.2, 11.0, 16.8".
func (w *roWatch) stopped(t0, t1 time.Time, old []string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, p := range w.points {
		if p.at.Before(t0) || p.at.After(t1) {
			continue
		}
		left := old[:0:0]
		for _, id := range old {
			if slices.Contains(p.ids, id) {
				left = append(left, id)
			} else {
				out = append(out, fmt.Sprintf("%.1f", p.at.Sub(t0).Seconds()))
			}
		}
		old = left
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// switchGap is how long after the first request sent from since that an
// instance of a version isTo answered, the last request an instance of a
// version isFrom answered was sent (negative: none after it).
func (w *roWatch) switchGap(reqs asReqs, since time.Time, isFrom, isTo func(int) bool) time.Duration {
	var lastFrom, firstTo time.Time
	for _, q := range reqs {
		if q.inst == "" || q.at.Before(since) {
			continue
		}
		v := w.versionOf(q.inst)
		if isFrom(v) && q.at.After(lastFrom) {
			lastFrom = q.at
		}
		if isTo(v) && (firstTo.IsZero() || q.at.Before(firstTo)) {
			firstTo = q.at
		}
	}
	if lastFrom.IsZero() || firstTo.IsZero() {
		return 0
	}
	return lastFrom.Sub(firstTo)
}

func (w *roWatch) versionOf(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.versions[id]
}

// answersByVersion counts the answered requests by the version of the
// instance that answered: "1: 1890, 2: 2110".
func (w *roWatch) answersByVersion(reqs asReqs) string {
	by := map[int]int{}
	for _, q := range reqs {
		if q.inst != "" {
			by[w.versionOf(q.inst)]++
		}
	}
	var vs []int
	for v := range by {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("%d: %d", v, by[v]))
	}
	return strings.Join(parts, ", ")
}
