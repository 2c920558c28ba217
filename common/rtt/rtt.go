// Package rtt measures round-trip times to peers with libp2p ping, in
// parallel and with a timeout per peer, and keeps a smoothed (EWMA) value per
// peer. Latency crosses every API, flag and JSON document in milliseconds:
// PerfInd carries it.
package rtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

// PerfInd is a performance indicator: latency requirements of services and
// measured latencies between nodes. RTT is in milliseconds; 0 means "none"
// in a requirement.
type PerfInd struct {
	RTT float64 `json:"RTT"`
}

// FromDuration converts a measured duration to a PerfInd.
func FromDuration(d time.Duration) PerfInd {
	return PerfInd{RTT: float64(d) / float64(time.Millisecond)}
}

// Duration converts the PerfInd's RTT to a time.Duration.
func (p PerfInd) Duration() time.Duration {
	return time.Duration(p.RTT * float64(time.Millisecond))
}

// Options tune a Tracker. The zero value is usable.
type Options struct {
	// Timeout bounds the measurement of one peer (default 2s).
	Timeout time.Duration
	// Parallel bounds how many peers are pinged at once (default 32).
	Parallel int
	// Alpha is the EWMA weight of a new sample, in (0, 1] (default 0.5).
	// Higher reacts faster to a peer that moves away.
	Alpha float64
	// Samples is how many pings one measurement takes, back to back on one
	// stream; the smallest counts (default 3). A busy CPU or a first
	// packet only ever adds delay, so the minimum is the truest sample.
	Samples int
	// Observe, when set, receives every raw sample in seconds (metrics).
	Observe func(seconds float64)
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Parallel <= 0 {
		o.Parallel = 32
	}
	if o.Alpha <= 0 || o.Alpha > 1 {
		o.Alpha = 0.5
	}
	if o.Samples <= 0 {
		o.Samples = 3
	}
	return o
}

// Sample is what the Tracker knows of one peer.
type Sample struct {
	// Smoothed is the EWMA of the samples so far.
	Smoothed time.Duration
	// Last is the most recent sample.
	Last time.Duration
	// At is when Last was taken.
	At time.Time
}

// Result is the outcome of measuring one peer.
type Result struct {
	Peer peer.ID
	RTT  time.Duration // smoothed, when Err is nil
	Err  error
}

// Tracker measures and caches RTTs. Safe for concurrent use.
type Tracker struct {
	host host.Host
	opts Options

	mu       sync.Mutex
	samples  map[peer.ID]Sample
	inflight map[peer.ID]*flight
}

// flight is one ping of a peer in progress, shared by every caller that
// asks for that peer meanwhile: concurrent placements and routers would
// otherwise open a ping stream each, which libp2p's resource manager
// refuses past a handful per peer, on both sides.
type flight struct {
	done chan struct{}
	rtt  time.Duration
	err  error
	// abandoned: the pinging caller's context ended, so err says nothing
	// about the peer.
	abandoned bool
}

// NewTracker returns a Tracker that pings from h.
func NewTracker(h host.Host, opts Options) *Tracker {
	return &Tracker{host: h, opts: opts.withDefaults(),
		samples: make(map[peer.ID]Sample), inflight: make(map[peer.ID]*flight)}
}

// ErrNoAnswer means a ping ended without a result.
var ErrNoAnswer = errors.New("ping ended without an answer")

// Ping takes one RTT sample of p, bounded by the per-peer timeout, and
// folds it into p's smoothed value, which it returns. A call made while
// another one for p is in progress waits for that one's result instead of
// pinging again.
func (t *Tracker) Ping(ctx context.Context, p peer.ID) (time.Duration, error) {
	for {
		t.mu.Lock()
		f, shared := t.inflight[p]
		if !shared {
			f = &flight{done: make(chan struct{})}
			t.inflight[p] = f
		}
		t.mu.Unlock()
		if !shared {
			f.rtt, f.err = t.ping(ctx, p)
			f.abandoned = ctx.Err() != nil
			t.mu.Lock()
			delete(t.inflight, p)
			t.mu.Unlock()
			close(f.done)
			return f.rtt, f.err
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return 0, fmt.Errorf("ping %s: %w", p.ShortString(), ctx.Err())
		}
		// The caller that pinged gave up: ping again for this one.
		if f.err != nil && f.abandoned {
			continue
		}
		return f.rtt, f.err
	}
}

// refusedAttempts bounds the pings of a peer that resets our ping stream
// at once: it holds its limit of ping streams from us (a few per peer),
// some of them of pings we gave up on whose end it has not seen yet.
const refusedAttempts = 3

// ping takes the sample for Ping, within the per-peer timeout.
func (t *Tracker) ping(ctx context.Context, p peer.ID) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		d, err := t.pingOnce(ctx, p)
		refused := errors.Is(err, network.ErrReset) || errors.Is(err, network.ErrResourceLimitExceeded)
		if err == nil || !refused || attempt == refusedAttempts || ctx.Err() != nil {
			return d, err
		}
		select {
		case <-ctx.Done():
			return d, err
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
		}
	}
}

// pingOnce opens one ping stream and takes the best of its samples.
func (t *Tracker) pingOnce(ctx context.Context, p peer.ID) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := ping.Ping(ctx, t.host, p)
	best := time.Duration(-1)
	for range t.opts.Samples {
		res, ok := <-results
		switch {
		case !ok && best < 0 && ctx.Err() != nil:
			return 0, fmt.Errorf("ping %s: %w", p.ShortString(), ctx.Err())
		case !ok && best < 0:
			return 0, fmt.Errorf("ping %s: %w", p.ShortString(), ErrNoAnswer)
		case !ok:
		case res.Error != nil && best < 0:
			return 0, fmt.Errorf("ping %s: %w", p.ShortString(), res.Error)
		case res.Error == nil && (best < 0 || res.RTT < best):
			best = res.RTT
		}
		if !ok || res.Error != nil {
			break
		}
	}
	cancel() // ends the ping stream
	for range results {
	}
	return t.record(p, best), nil
}

// Record folds an RTT sample measured elsewhere (e.g. a request's round
// trip) into p's smoothed value and returns the new value.
func (t *Tracker) Record(p peer.ID, d time.Duration) time.Duration { return t.record(p, d) }

func (t *Tracker) record(p peer.ID, d time.Duration) time.Duration {
	if d <= 0 {
		d = time.Nanosecond // a sample was taken; keep RTTs positive
	}
	if t.opts.Observe != nil {
		t.opts.Observe(d.Seconds())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.samples[p]
	if ok {
		s.Smoothed = time.Duration(t.opts.Alpha*float64(d) + (1-t.opts.Alpha)*float64(s.Smoothed))
	} else {
		s.Smoothed = d
	}
	s.Last, s.At = d, time.Now()
	t.samples[p] = s
	return s.Smoothed
}

// Measure pings every peer in parallel (at most Options.Parallel at once)
// and returns one Result per peer, in the order given. The whole call takes
// about as long as the slowest peer, bounded by the per-peer timeout.
func (t *Tracker) Measure(ctx context.Context, peers []peer.ID) []Result {
	out := make([]Result, len(peers))
	sem := make(chan struct{}, t.opts.Parallel)
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out[i] = Result{Peer: p, Err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			d, err := t.Ping(ctx, p)
			out[i] = Result{Peer: p, RTT: d, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// MeasureSequential pings peers one after another. It exists as the
// baseline Measure is benchmarked against.
func (t *Tracker) MeasureSequential(ctx context.Context, peers []peer.ID) []Result {
	out := make([]Result, len(peers))
	for i, p := range peers {
		d, err := t.Ping(ctx, p)
		out[i] = Result{Peer: p, RTT: d, Err: err}
	}
	return out
}

// Get returns what is known of p.
func (t *Tracker) Get(p peer.ID) (Sample, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.samples[p]
	return s, ok
}

// PerfInd returns p's smoothed RTT as a PerfInd, and whether one is known.
func (t *Tracker) PerfInd(p peer.ID) (PerfInd, bool) {
	s, ok := t.Get(p)
	if !ok {
		return PerfInd{}, false
	}
	return FromDuration(s.Smoothed), true
}

// Forget drops what is known of p (e.g. when it leaves the network).
func (t *Tracker) Forget(p peer.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.samples, p)
}
