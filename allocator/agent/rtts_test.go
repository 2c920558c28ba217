package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/registry"
)

// TestSettleRTT: a published RTT moves only when the measure is more
// than 0.5 ms, 10 % and four deviations away from it, and then to the
// measure's tenth of a millisecond, so that jitter leaves the node record
// as it was.
func TestSettleRTT(t *testing.T) {
	for _, tc := range []struct {
		name     string
		measures []float64
		want     []float64
	}{
		{"first measure rounds", []float64{0.04}, []float64{0}},
		{"loopback jitter", []float64{0.12, 0.31, 0.08, 0.55, 0.61, 0.2}, []float64{0.1, 0.1, 0.1, 0.1, 0.6, 0.6}},
		// Near by, 0.5 ms is the larger step: 10 % of 3 ms is 0.3 ms.
		{"near", []float64{3.04, 3.4, 2.6, 3.56, 3.2, 2.49}, []float64{3, 3, 3, 3.6, 3.6, 2.5}},
		// Far away, 10 % is: 80 ms moves at 8 ms.
		{"far", []float64{80.26, 84, 87.9, 72.4, 88.34, 80}, []float64{80.3, 80.3, 80.3, 80.3, 88.3, 88.3}},
		{"moves away", []float64{20, 21.9, 45.06, 44, 47}, []float64{20, 20, 45.1, 45.1, 45.1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var last *float64
			for i, v := range tc.measures {
				last = settleRTT(last, v, 0)
				if *last != tc.want[i] {
					t.Fatalf("measure %d (%v ms): published %v, want %v", i, v, *last, tc.want[i])
				}
			}
		})
	}
	if got := *settleRTT(ptr(20), 25, 1.3); got != 20 {
		t.Errorf("5 ms from 20 ms with a deviation of 1.3 ms: %v, want 20 (within 5.2 ms)", got)
	}
	if got := *settleRTT(ptr(20), 25, 1.2); got != 25 {
		t.Errorf("5 ms from 20 ms with a deviation of 1.2 ms: %v, want 25 (beyond 4.8 ms)", got)
	}
	b, _ := json.Marshal(settleRTT(nil, 12.34, 0))
	if string(b) != "12.3" {
		t.Errorf("12.34 ms encodes as %s, want 12.3", b)
	}
}

func ptr(v float64) *float64 { return &v }

// peers returns n fixed peer IDs.
func peers(t *testing.T, n int) []peer.ID {
	t.Helper()
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = p2ptest.ID(t, i+1)
	}
	return out
}

// measure runs a round in which every peer in ms answered with its
// measure, and returns what the book publishes then.
func measure(b *rttBook, ms map[peer.ID]float64) []registry.PeerRTT {
	b.pick(len(b.peers))
	for id, v := range ms {
		b.tried(id, v, true)
	}
	return b.publish()
}

// TestRTTBookFollowsLastingMovesNotOutliers: a link that jitters widely,
// or has one bad measure, keeps its published RTT; one that moves for
// good shows within two measures.
func TestRTTBookFollowsLastingMovesNotOutliers(t *testing.T) {
	id := peers(t, 1)[0]
	b := newRTTBook()
	b.setPeers([]peer.ID{id})
	round := func(ms float64) float64 {
		t.Helper()
		got := measure(b, map[peer.ID]float64{id: ms})
		if len(got) != 1 {
			t.Fatalf("published %+v", got)
		}
		return got[0].RTT
	}
	round(10)
	for i := range 20 { // 2 ms of jitter: over the 1 ms step, within the band
		if got := round(10 + 2*float64(i%2)); got != 10 {
			t.Fatalf("jitter round %d: %v, want 10", i, got)
		}
	}
	for range 20 {
		round(10)
	}
	for i, ms := range []float64{14, 10, 10} { // one bad measure
		if got := round(ms); got != 10 {
			t.Fatalf("round %d after a quiet spell (%v ms): %v, want 10", i, ms, got)
		}
	}
	for range 20 {
		round(10)
	}
	// A move for good, smoothed as the tracker smooths it.
	var got float64
	for _, ms := range []float64{12, 13, 13.5} {
		got = round(ms)
	}
	if got == 10 {
		t.Fatalf("a lasting move to 14 ms still published as 10 after three measures")
	}
}

// TestRTTBookPublishesTheNearestFirstUpToTheCap: of 40 peers, the 32
// nearest, nearest first, ties by peer ID; the record stays under its
// size bound.
func TestRTTBookPublishesTheNearestFirstUpToTheCap(t *testing.T) {
	ids := peers(t, 40)
	b := newRTTBook()
	b.setPeers(ids)
	ms := map[peer.ID]float64{}
	for i, id := range ids {
		ms[id] = float64(40 - i) // peer 39 is the nearest (1 ms)
	}
	ms[ids[0]] = 1 // tied with peer 39
	got := measure(b, ms)
	if len(got) != registry.MaxNodeRTTs {
		t.Fatalf("published %d RTTs, want %d", len(got), registry.MaxNodeRTTs)
	}
	first, second := ids[0].String(), ids[39].String()
	if second < first {
		first, second = second, first
	}
	if got[0].PeerID != first || got[1].PeerID != second || got[0].RTT != 1 || got[1].RTT != 1 {
		t.Errorf("first two %+v, want the two at 1 ms by peer ID (%s, %s)", got[:2], first, second)
	}
	for i := 1; i < len(got); i++ {
		if got[i].RTT < got[i-1].RTT {
			t.Fatalf("not nearest first at %d: %+v", i, got)
		}
	}
	if last := got[len(got)-1]; last.RTT != 31 {
		t.Errorf("farthest published %+v, want 31 ms (the 32nd nearest)", last)
	}
	if enc, _ := json.Marshal(got); len(enc)/len(got) > 80 {
		t.Errorf("%d bytes an entry: the documented size is about 77", len(enc)/len(got))
	}
}

// TestRTTBookPicksInTurn: a round pings at most its limit, those pinged
// longest ago first, so every peer is measured in turn; among peers
// pinged as long ago, the nearest first.
func TestRTTBookPicksInTurn(t *testing.T) {
	ids := peers(t, 40)
	b := newRTTBook()
	b.setPeers(ids)
	seen := map[peer.ID]int{}
	for round := range 3 {
		got := b.pick(16)
		if want := 16; len(got) != want {
			t.Fatalf("round %d picked %d, want %d", round, len(got), want)
		}
		for _, id := range got {
			if seen[id] > 0 && len(seen) < len(ids) {
				t.Fatalf("round %d picked %s again before every peer had its turn", round, id)
			}
			seen[id]++
			b.tried(id, float64(seen[id]), true)
		}
	}
	if len(seen) != len(ids) {
		t.Fatalf("%d of %d peers pinged in 3 rounds of 16", len(seen), len(ids))
	}
	// A peer not pinged in its round (the round ended first) keeps its
	// turn.
	next := b.pick(1)[0]
	if again := b.pick(1)[0]; again != next {
		t.Errorf("a peer not pinged lost its turn: %s, then %s", next, again)
	}
	if b.pick(100); len(b.pick(100)) != len(ids) {
		t.Error("a limit above the peers known picks them all")
	}
}

// TestRTTBookHoldsStillAndForgets: jitter changes nothing published;
// a peer that fails three pings in a row drops out, one that leaves the
// node list at once; one that comes back is published afresh.
func TestRTTBookHoldsStillAndForgets(t *testing.T) {
	ids := peers(t, 3)
	b := newRTTBook()
	b.setPeers(ids)
	want := fmt.Sprint(measure(b, map[peer.ID]float64{ids[0]: 10, ids[1]: 20, ids[2]: 0.2}))
	for i := range 10 {
		got := fmt.Sprint(measure(b, map[peer.ID]float64{
			ids[0]: 10 + 0.4*float64(i%2), ids[1]: 20 - 1.5*float64(i%2), ids[2]: 0.1 + 0.3*float64(i%2)}))
		if got != want {
			t.Fatalf("round %d: jitter changed the RTTs: %s, was %s", i, got, want)
		}
	}
	// ids[1] stops answering.
	for fails := 1; fails <= 3; fails++ {
		b.pick(3)
		b.tried(ids[0], 10, true)
		b.tried(ids[1], 0, false)
		b.tried(ids[2], 0.2, true)
		got := b.publish()
		if kept := len(got) == 3; kept != (fails < 3) {
			t.Fatalf("after %d failed pings: %+v", fails, got)
		}
	}
	if got := b.publish(); len(got) != 2 || got[0].PeerID != ids[2].String() || got[1].PeerID != ids[0].String() {
		t.Fatalf("after 3 failed pings: %+v, want only %s and %s", got, ids[2], ids[0])
	}
	// It answers again, further: published afresh, not held at 20.
	if got := measure(b, map[peer.ID]float64{ids[1]: 20.4}); len(got) != 3 || got[2].RTT != 20.4 {
		t.Fatalf("back: %+v, want 20.4 ms", got)
	}
	// One failed ping is not enough to go.
	b.pick(3)
	b.tried(ids[1], 0, false)
	if got := measure(b, map[peer.ID]float64{ids[1]: 20.4}); len(got) != 3 {
		t.Fatalf("after one failed ping and an answer: %+v", got)
	}
	// ids[0] leaves the node list.
	b.setPeers([]peer.ID{ids[1], ids[2]})
	b.tried(ids[0], 10, true) // a ping answered after the list was read
	if got := b.publish(); len(got) != 2 || got[1].PeerID != ids[1].String() {
		t.Fatalf("after leaving the list: %+v", got)
	}
}

// slowPinger answers after delay, counting the pings in flight; it fails
// the peers in fail at once.
type slowPinger struct {
	delay         time.Duration
	fail          map[peer.ID]bool
	inFlight, top atomic.Int32
	mu            sync.Mutex
	pinged        []peer.ID
}

func (p *slowPinger) Ping(ctx context.Context, id peer.ID) (time.Duration, error) {
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for {
		top := p.top.Load()
		if n <= top || p.top.CompareAndSwap(top, n) {
			break
		}
	}
	p.mu.Lock()
	p.pinged = append(p.pinged, id)
	p.mu.Unlock()
	if p.fail[id] {
		return 0, errors.New("connection refused")
	}
	select {
	case <-time.After(p.delay):
		return 5 * time.Millisecond, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// TestMeasurePeersIsBoundedAndMeetsItsDeadline: at most maxRTTPings pings
// at once and maxRTTPeersPerRound a round; a round ends at its timeout,
// and the peers it cut short count as not pinged; failures count.
func TestMeasurePeersIsBoundedAndMeetsItsDeadline(t *testing.T) {
	ids := peers(t, 40)
	b := newRTTBook()
	b.setPeers(ids)
	p := &slowPinger{delay: 20 * time.Millisecond}
	measurePeers(t.Context(), p, b, 10*time.Second)
	if top := p.top.Load(); top > maxRTTPings || top < 2 {
		t.Errorf("%d pings at once, want 2 to %d", top, maxRTTPings)
	}
	if n := len(p.pinged); n != maxRTTPeersPerRound {
		t.Errorf("a round pinged %d peers, want %d", n, maxRTTPeersPerRound)
	}
	measurePeers(t.Context(), p, b, 10*time.Second)
	measurePeers(t.Context(), p, b, 10*time.Second)
	if got := b.publish(); len(got) != registry.MaxNodeRTTs || got[0].RTT != 5 {
		t.Errorf("after 3 rounds: published %d (%+v), want %d at 5 ms", len(got), got, registry.MaxNodeRTTs)
	}

	b = newRTTBook()
	b.setPeers(ids[:3])
	p = &slowPinger{delay: time.Hour}
	start := time.Now()
	measurePeers(t.Context(), p, b, 100*time.Millisecond)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("round took %s with a 100 ms timeout", d)
	}
	for _, e := range b.peers {
		if e.tried != 0 || e.fails != 0 {
			t.Errorf("a ping the round cut short counted: %+v", e)
		}
	}

	p = &slowPinger{fail: map[peer.ID]bool{ids[0]: true}}
	for range 3 {
		measurePeers(t.Context(), p, b, 10*time.Second)
	}
	if got := b.publish(); len(got) != 2 || b.peers[ids[0].String()].fails != 3 {
		t.Errorf("a peer refusing every ping: published %+v, %d failures", got, b.peers[ids[0].String()].fails)
	}
}
