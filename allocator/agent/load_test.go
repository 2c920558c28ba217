package agent

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// poll is a status poll at a time (seconds from the test's epoch), with
// the proxy's request count and the runtime's CPU seconds (negative: the
// runtime could not say).
type poll struct {
	at       float64
	requests uint64
	cpu      float64
	inFlight int
}

func samplesOf(epoch time.Time, polls []poll) []loadSample {
	var out []loadSample
	for _, p := range polls {
		out = append(out, loadSample{
			at:       epoch.Add(time.Duration(p.at * float64(time.Second))),
			requests: p.requests, inFlight: p.inFlight, cpu: p.cpu, hasCPU: p.cpu >= 0,
		})
	}
	return out
}

func TestLoadWindowMeasure(t *testing.T) {
	epoch := time.Unix(1_000_000, 0)
	const none = -1.0 // no CPU figure
	for _, tc := range []struct {
		name  string
		polls []poll
		now   float64 // seconds after epoch; 0: the last poll's time
		ok    bool
		rps   float64
		cpu   float64 // none: no CPU figure
		infl  int
	}{
		{name: "no poll", ok: false},
		{name: "one poll", polls: []poll{{0, 10, 1, 0}}, ok: false},
		{name: "steady", ok: true, rps: 10, cpu: 50, infl: 2, polls: []poll{
			{0, 0, 0, 0}, {1, 10, 0.5, 1}, {2, 20, 1, 3}, {3, 30, 1.5, 2}}},
		{name: "uneven polls", ok: true, rps: 20, cpu: 25, polls: []poll{
			{0, 100, 2, 0}, {0.5, 110, 2.125, 0}, {2, 140, 2.5, 0}}},
		{name: "idle", ok: true, rps: 0, cpu: 0, polls: []poll{
			{0, 7, 3, 0}, {1, 7, 3, 0}, {2, 7, 3, 0}}},
		// The proxy restarted between 3 and 4: its count started again.
		// That pair is left out; the others make 10 req/s.
		{name: "proxy restart", ok: true, rps: 10, cpu: none, polls: []poll{
			{0, 0, none, 0}, {1, 10, none, 0}, {2, 20, none, 0}, {3, 30, none, 0}, {4, 5, none, 0}, {5, 15, none, 0}}},
		// A restart that leaves only one pair since it: that pair.
		{name: "restart at the end", ok: true, rps: 2, polls: []poll{
			{0, 500, 9, 0}, {1, 3, 0.1, 0}, {2, 5, 0.1, 0}}},
		// A busy first half, then nothing for a whole window: only the
		// window (the last 5 s) counts.
		{name: "old polls fall out", ok: true, rps: 0, cpu: 0, polls: []poll{
			{0, 0, 0, 0}, {1, 100, 1, 0}, {2, 200, 2, 0}, {3, 300, 3, 0}, {4, 400, 4, 0}, {5, 500, 5, 0},
			{6, 500, 5, 0}, {7, 500, 5, 0}, {8, 500, 5, 0}, {9, 500, 5, 0}, {10, 500, 5, 0}}},
		// Polls at 0, 3, 6 and 8: the window (3 to 8) starts at the poll
		// at 3, and the one at 0 is forgotten.
		{name: "window spans its start", ok: true, rps: 28, cpu: 28, polls: []poll{
			{0, 0, 0, 0}, {3, 0, 0, 0}, {6, 100, 1, 0}, {8, 140, 1.4, 0}}},
		// The runtime could not say at one poll: both pairs around it are
		// left out of the CPU rate, not counted as 0.
		{name: "cpu missing once", ok: true, rps: 10, cpu: 50, polls: []poll{
			{0, 0, 0, 0}, {1, 10, 0.5, 0}, {2, 20, none, 0}, {3, 30, 1.5, 0}, {4, 40, 2, 0}}},
		{name: "cpu never known", ok: true, rps: 10, cpu: none, polls: []poll{
			{0, 0, none, 0}, {1, 10, none, 0}}},
		// The instance restarted: its CPU time started again.
		{name: "cpu reset", ok: true, rps: 0, cpu: 100, polls: []poll{
			{0, 0, 40, 0}, {1, 0, 41, 0}, {2, 0, 0.5, 0}, {3, 0, 1.5, 0}}},
		{name: "several cores", ok: true, rps: 0, cpu: 250, polls: []poll{
			{0, 0, 10, 0}, {2, 0, 15, 0}}},
		// The proxy stopped answering: the last poll is older than the
		// window, and the load is unknown rather than 0.
		{name: "stale", polls: []poll{{0, 0, 0, 0}, {1, 10, 1, 0}}, now: 6.5, ok: false},
		{name: "fresh enough", polls: []poll{{0, 0, 0, 0}, {1, 10, 1, 0}}, now: 5.5, ok: true, rps: 10, cpu: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w loadWindow
			for _, s := range samplesOf(epoch, tc.polls) {
				w.add(s)
			}
			now := tc.now
			if now == 0 && len(tc.polls) > 0 {
				now = tc.polls[len(tc.polls)-1].at
			}
			m, ok := w.measure(epoch.Add(time.Duration(now * float64(time.Second))))
			if ok != tc.ok {
				t.Fatalf("measured %v (%+v), want %v", ok, m, tc.ok)
			}
			if !ok {
				return
			}
			if math.Abs(m.rps-tc.rps) > 1e-9 {
				t.Errorf("rps %v, want %v", m.rps, tc.rps)
			}
			if wantCPU := tc.cpu != none; m.hasCPU != wantCPU || (wantCPU && math.Abs(m.cpu-tc.cpu) > 1e-9) {
				t.Errorf("cpu %v (known %v), want %v (known %v)", m.cpu, m.hasCPU, tc.cpu, wantCPU)
			}
			if m.inFlight != tc.infl {
				t.Errorf("in flight %d, want %d (the last poll's)", m.inFlight, tc.infl)
			}
		})
	}
}

func TestLoadWindowKeepsFewPolls(t *testing.T) {
	epoch := time.Unix(1_000_000, 0)
	var w loadWindow
	for i := range 1000 {
		w.add(loadSample{at: epoch.Add(time.Duration(i) * time.Second), requests: uint64(i)})
	}
	if n := len(w.samples); n != 6 {
		t.Errorf("polls every second, 5 s window: %d kept, want 6", n)
	}
	for i := range 1000 {
		w.add(loadSample{at: epoch.Add(time.Hour + time.Duration(i)*time.Millisecond)})
	}
	if n := len(w.samples); n != maxLoadSamples {
		t.Errorf("polls every millisecond: %d kept, want at most %d", n, maxLoadSamples)
	}
	w.reset()
	if _, ok := w.measure(epoch.Add(time.Hour + time.Second)); ok {
		t.Error("measured after reset")
	}
}

// TestSeedCountsTheRequestsBeforeTheFirstPoll: the request that woke an
// on-demand instance was served before its first poll; seeded at the
// run's start, the window counts it.
func TestSeedCountsTheRequestsBeforeTheFirstPoll(t *testing.T) {
	epoch := time.Unix(1_000_000, 0)
	var w loadWindow
	w.seed(epoch)
	w.add(loadSample{at: epoch.Add(500 * time.Millisecond), requests: 1})
	m, ok := w.measure(epoch.Add(600 * time.Millisecond))
	if !ok || m.rps != 2 {
		t.Fatalf("measured %+v, %v; want 2 req/s (1 request in the 0.5 s since the start)", m, ok)
	}
	w.seed(epoch.Add(time.Hour)) // not empty: no effect
	if len(w.samples) != 2 || !w.samples[0].at.Equal(epoch) {
		t.Fatalf("seed changed a window that had polls: %+v", w.samples)
	}
}

// TestSettle: published figures move by whole steps, and only when the
// measure is a step away from the last one published, so that noise
// within a step leaves the node record as it was.
func TestSettle(t *testing.T) {
	for _, tc := range []struct {
		name     string
		per      float64
		measures []float64
		want     []float64
	}{
		{"cpu noise near zero", 1, []float64{0.4, 0.6, 0.9, 0.2, 0.99}, []float64{0, 0, 0, 0, 0}},
		{"cpu rises and falls", 1, []float64{0.4, 1.2, 0.3, 0, 37.6, 37.1, 38.4, 36.5}, []float64{0, 1, 1, 0, 38, 38, 38, 37}},
		{"rps", 10, []float64{0.04, 0.12, 0.18, 0.26, 0, 49.96, 50.04, 50.2}, []float64{0, 0.1, 0.1, 0.3, 0, 50, 50, 50.2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var last *float64
			for i, v := range tc.measures {
				last = settle(last, v, tc.per)
				if *last != tc.want[i] {
					t.Fatalf("measure %d (%v): published %v, want %v", i, v, *last, tc.want[i])
				}
			}
		})
	}
	// Tenths print as tenths: 0.3, not 0.30000000000000004.
	b, _ := json.Marshal(settle(nil, 0.29, 10))
	if string(b) != "0.3" {
		t.Errorf("0.29 to a tenth encodes as %s", b)
	}
}

func TestPublishOmitsUnknownCPU(t *testing.T) {
	epoch := time.Unix(1_000_000, 0)
	var w loadWindow
	for _, s := range samplesOf(epoch, []poll{{0, 0, 1, 0}, {1, 3, 1.5, 1}}) {
		w.add(s)
	}
	rps, inFlight, cpu, ok := w.publish(epoch.Add(time.Second))
	if !ok || rps != 3 || inFlight != 1 || cpu == nil || *cpu != 50 {
		t.Fatalf("publish: %v %v %v %v", rps, inFlight, cpu, ok)
	}
	// The runtime cannot say any more: once its last readings have left
	// the window, there is no CPU figure (rather than 0).
	for i := 2; i <= 7; i++ {
		w.add(loadSample{at: epoch.Add(time.Duration(i) * time.Second), requests: uint64(3 * i)})
		_, _, cpu, ok := w.publish(epoch.Add(time.Duration(i) * time.Second))
		if !ok || (i < 6) != (cpu != nil) {
			t.Errorf("%d s: cpu %v (ok %v); want one until the reading at 1 s is the window's first (6 s), none after", i, cpu, ok)
		}
	}
	b, _ := json.Marshal(registry.InstanceLoad{ID: "a", Service: "s", RPS: 3})
	if string(b) != `{"ID":"a","Service":"s","RPS":3,"InFlight":0}` {
		t.Errorf("an instance without CPU figure encodes as %s", b)
	}
}

func TestCapLoad(t *testing.T) {
	var load []registry.InstanceLoad
	for i, rps := range []float64{5, 50, 1, 50, 20} {
		load = append(load, registry.InstanceLoad{ID: fmt.Sprintf("i%d", i), RPS: rps})
	}
	got := capLoad(load, 3)
	var ids []string
	for _, l := range got {
		ids = append(ids, l.ID)
	}
	if fmt.Sprint(ids) != "[i1 i3 i4]" {
		t.Errorf("kept %v, want the 3 busiest by ID: [i1 i3 i4]", ids)
	}
	under := []registry.InstanceLoad{{ID: "b", RPS: 9}, {ID: "a", RPS: 1}}
	if got := capLoad(under, 3); len(got) != 2 || got[0].ID != "a" {
		t.Errorf("under the cap: %+v", got)
	}
}
