package rtt_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/rtt"
)

// TestConcurrentMeasurementsSharePings runs many measurements of the same
// peers at once, as concurrent placements do. Each used to open its own
// ping streams, and libp2p's resource manager refused them past a few per
// peer ("resource limit exceeded", streams reset by the remote); now
// concurrent callers share one ping per peer and every one gets an RTT.
func TestConcurrentMeasurementsSharePings(t *testing.T) {
	nodes := p2ptest.Network(t, 4, nil)
	var ids []peer.ID
	for _, n := range nodes[1:] {
		ids = append(ids, n.ID())
	}
	var samples atomic.Int64
	tr := rtt.NewTracker(nodes[0].Host(), rtt.Options{Observe: func(float64) { samples.Add(1) }})
	const callers = 40
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, callers*len(ids))
	for range callers {
		wg.Go(func() {
			for _, r := range tr.Measure(ctx, ids) {
				if r.Err != nil {
					errs <- r.Err
				} else if r.RTT <= 0 {
					t.Errorf("peer %s: RTT %s", r.Peer.ShortString(), r.RTT)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("measurement failed: %v", err)
	}
	if n := samples.Load(); n >= callers*int64(len(ids)) {
		t.Errorf("%d samples recorded for %d measurements of %d peers: pings were not shared", n, callers, len(ids))
	}
}

// TestSharedPingOutlivesAGivingUpCaller: when the caller whose ping the
// others wait on gives up, the others still get an RTT of their own.
func TestSharedPingOutlivesAGivingUpCaller(t *testing.T) {
	nodes := p2ptest.Network(t, 2, nil)
	tr := rtt.NewTracker(nodes[0].Host(), rtt.Options{})
	p := nodes[1].ID()
	for range 20 {
		gone, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = tr.Ping(gone, p) })
		cancel()
		d, err := tr.Ping(t.Context(), p)
		wg.Wait()
		if err != nil || d <= 0 {
			t.Fatalf("ping after another caller gave up: %s, %v", d, err)
		}
	}
}
