package agent

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// CPUMeter is what a runtime offers when it can tell how much CPU an
// instance uses (both runtimes do): the agent reads it at each status
// poll and publishes the rate in the node record's Load. Without it, or
// when it fails, the instance's load has no CPU figure.
type CPUMeter interface {
	// CPUSeconds returns the CPU time, user and system, the instance's
	// current run has used so far. It may start again from about 0 when
	// the instance restarts, and fails while the instance is not running.
	// It is safe for concurrent use and returns when ctx ends.
	CPUSeconds(ctx context.Context, id string) (float64, error)
}

// maxLoadSamples bounds the polls a loadWindow keeps: polled faster than
// every registry.LoadWindow/maxLoadSamples, the window is shorter.
const maxLoadSamples = 256

// loadSample is one status poll of a running instance.
type loadSample struct {
	at       time.Time
	requests uint64 // its proxy's count since it started
	inFlight int
	cpu      float64 // CPU seconds of its current run; valid with hasCPU
	hasCPU   bool
}

// loadWindow is a running instance's recent polls, from which its load
// is measured, and the figures last published, which keep the record
// still while the load does not move by a whole step. Its zero value
// measures over registry.LoadWindow.
type loadWindow struct {
	span    time.Duration // 0: registry.LoadWindow
	samples []loadSample

	pubRPS, pubCPU *float64 // last published; nil before the first
}

// add records a poll, and forgets those the window no longer needs: it
// keeps one poll at or before the window's start, so that the rates cover
// the whole window.
func (w *loadWindow) add(s loadSample) {
	if n := len(w.samples); n > 0 && !s.at.After(w.samples[n-1].at) {
		return // out of order: keep time moving forward
	}
	w.samples = append(w.samples, s)
	from := s.at.Add(-w.window())
	drop := 0
	for drop+1 < len(w.samples) && !w.samples[drop+1].at.After(from) {
		drop++
	}
	drop = max(drop, len(w.samples)-maxLoadSamples)
	w.samples = slices.Delete(w.samples, 0, drop)
}

func (w *loadWindow) window() time.Duration {
	if w.span <= 0 {
		return registry.LoadWindow
	}
	return w.span
}

// seed starts an empty window at the start of the instance's current
// run, when its proxy's counters were 0: without it the requests served
// before the first poll (the one that woke an on-demand instance) would
// never count.
func (w *loadWindow) seed(runStart time.Time) {
	if len(w.samples) == 0 && !runStart.IsZero() {
		w.samples = append(w.samples, loadSample{at: runStart})
	}
}

// reset forgets the polls (the instance restarted: its counters started
// again).
func (w *loadWindow) reset() { w.samples = w.samples[:0] }

// loadMeasure is what a window measures.
type loadMeasure struct {
	rps      float64
	inFlight int
	cpu      float64 // percent of one core; valid with hasCPU
	hasCPU   bool
}

// measure returns the load over the window's polls: the requests and CPU
// seconds added between consecutive polls over the time between them. A
// pair of polls across which a counter went down (the proxy, or the
// instance, restarted) is left out of that counter's rate, as is a pair
// without a CPU reading at either end. ok is false with fewer than two
// polls, or when the last is older than the window at now (the proxy has
// stopped answering).
func (w *loadWindow) measure(now time.Time) (m loadMeasure, ok bool) {
	n := len(w.samples)
	if n < 2 || now.Sub(w.samples[n-1].at) > w.window() {
		return loadMeasure{}, false
	}
	var reqs, cpu float64
	var reqSpan, cpuSpan time.Duration
	for i := 1; i < n; i++ {
		prev, cur := w.samples[i-1], w.samples[i]
		dt := cur.at.Sub(prev.at)
		if cur.requests >= prev.requests {
			reqs += float64(cur.requests - prev.requests)
			reqSpan += dt
		}
		if prev.hasCPU && cur.hasCPU && cur.cpu >= prev.cpu {
			cpu += cur.cpu - prev.cpu
			cpuSpan += dt
		}
	}
	if reqSpan == 0 {
		return loadMeasure{}, false
	}
	m = loadMeasure{rps: reqs / reqSpan.Seconds(), inFlight: w.samples[n-1].inFlight}
	if cpuSpan > 0 {
		m.cpu, m.hasCPU = 100*cpu/cpuSpan.Seconds(), true
	}
	return m, true
}

// publish returns the figures to publish now: RPS to 0.1 and CPU to 1 %,
// each moving only when the measure is a whole step away from the figure
// last published (so noise within a step does not change the record).
func (w *loadWindow) publish(now time.Time) (rps float64, inFlight int, cpu *float64, ok bool) {
	m, ok := w.measure(now)
	if !ok {
		return 0, 0, nil, false
	}
	w.pubRPS = settle(w.pubRPS, m.rps, 10)
	if m.hasCPU {
		w.pubCPU = settle(w.pubCPU, m.cpu, 1)
	} else {
		w.pubCPU = nil
	}
	if w.pubCPU != nil {
		c := *w.pubCPU
		cpu = &c
	}
	return *w.pubRPS, m.inFlight, cpu, true
}

// settle returns the figure to publish for v in steps of 1/per: last,
// while v is less than a step from it, else v rounded to a step.
func settle(last *float64, v float64, per float64) *float64 {
	if last != nil && math.Abs(v-*last)*per < 1 {
		return last
	}
	r := math.Round(v*per) / per
	return &r
}

// publishLoad returns the instance's load to publish, if it is running
// and measured.
func (in *instance) publishLoad(now time.Time) (registry.InstanceLoad, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.rec.State != registry.StateRunning {
		return registry.InstanceLoad{}, false
	}
	rps, inFlight, cpu, ok := in.load.publish(now)
	if !ok {
		return registry.InstanceLoad{}, false
	}
	return registry.InstanceLoad{ID: in.rec.ID, Service: in.rec.Service, RPS: rps, InFlight: inFlight, CPU: cpu}, true
}

// nodeLoad is the Load of the node record: its running instances', by
// ID, at most registry.MaxNodeLoad of them (those serving the most
// requests).
func (a *Agent) nodeLoad(now time.Time) []registry.InstanceLoad {
	a.mu.Lock()
	insts := a.snapshot()
	a.mu.Unlock()
	var out []registry.InstanceLoad
	for _, in := range insts {
		if l, ok := in.publishLoad(now); ok {
			out = append(out, l)
		}
	}
	return capLoad(out, registry.MaxNodeLoad)
}

// capLoad keeps the limit entries of load with the most requests per
// second, sorted by ID.
func capLoad(load []registry.InstanceLoad, limit int) []registry.InstanceLoad {
	if len(load) > limit {
		slices.SortFunc(load, func(x, y registry.InstanceLoad) int {
			return cmp.Or(cmp.Compare(y.RPS, x.RPS), cmp.Compare(x.ID, y.ID))
		})
		load = load[:limit]
	}
	slices.SortFunc(load, func(x, y registry.InstanceLoad) int { return cmp.Compare(x.ID, y.ID) })
	return load
}
