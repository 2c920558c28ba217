package rtt_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/netdelay"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/rtt"
)

// BenchmarkMeasure50Peers times one measurement of 50 peers, in parallel
// (what nodes do) against one after another (the baseline), on plain
// loopback and with 2 ms of user-space delay on every peer.
func BenchmarkMeasure50Peers(b *testing.B) {
	for _, delay := range []time.Duration{0, 2 * time.Millisecond} {
		nodes := p2ptest.Network(b, 51, func(i int, s *p2ptest.Spec) {
			if i > 0 && delay > 0 {
				s.Delay = netdelay.New(delay)
			}
		})
		var ids []peer.ID
		for _, n := range nodes[1:] {
			ids = append(ids, n.ID())
		}
		tr := nodes[0].RTT()
		settle(b, tr, ids, delay)
		for _, mode := range []struct {
			name    string
			measure func(*rtt.Tracker) []rtt.Result
		}{
			{"parallel", func(t *rtt.Tracker) []rtt.Result { return t.Measure(b.Context(), ids) }},
			{"sequential", func(t *rtt.Tracker) []rtt.Result { return t.MeasureSequential(b.Context(), ids) }},
		} {
			b.Run(fmt.Sprintf("delay=%s/%s", delay, mode.name), func(b *testing.B) {
				for b.Loop() {
					for _, r := range mode.measure(tr) {
						if r.Err != nil {
							b.Fatal(r.Err)
						}
					}
				}
			})
		}
	}
}

// settle waits until the network is quiet: 51 nodes that just started keep
// both cores busy with DHT refreshes for a few seconds, which a benchmark
// would otherwise measure instead of pings.
func settle(b *testing.B, tr *rtt.Tracker, ids []peer.ID, delay time.Duration) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		start := time.Now()
		tr.MeasureSequential(b.Context(), ids)
		// A quiet machine pings a peer in about 1 ms plus the delay of
		// its 3 samples; 5 ms plus twice that leaves room for noise.
		if time.Since(start) < time.Duration(len(ids))*(5*time.Millisecond+6*delay) {
			return
		}
	}
	b.Fatal("network did not settle within 30s")
}
