package agent

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/rtt"
	"github.com/physarum-p2p/physarum/registry"
)

// The node record's RTTs (registry.Node.RTTs): at every heartbeat's
// cadence the agent pings some of the other allocators it knows, learnt
// from the registry's node list every Config.PeerListEvery, and keeps the
// nearest registry.MaxNodeRTTs for the next heartbeat to publish. A
// change of RTT never publishes early.

// maxRTTPings bounds the pings of one round in flight at once.
const maxRTTPings = 8

// maxRTTPeersPerRound bounds the peers one round pings, those pinged
// longest ago first: with up to 16 others each is measured every round;
// with 99, each every 7 rounds (23 s at the default lease). A measurement
// costs both nodes CPU (about 0.3 ms, for 3 pings on a new stream), which
// this keeps at about 5 a second per node however large the network.
const maxRTTPeersPerRound = 16

// rttDeviations is how many times its mean deviation a peer's measure
// must move, beside registry.RTTStep and registry.RTTStepRatio, before its
// published RTT follows (TCP's retransmission timeout allows four, RFC
// 6298): a link whose RTT only jitters, however widely, holds still, and
// one that really moves shows within a measurement or two.
const rttDeviations = 4

// rttDevWeight is the weight of a new measure in a peer's mean deviation.
const rttDevWeight = 0.25

// rttDropFails is how many failed pings in a row (each given the
// tracker's timeout, 2 s) take a peer out of the published RTTs.
const rttDropFails = 3

// pinger measures the RTT to a peer. *rtt.Tracker implements it: Ping
// returns the peer's smoothed RTT after folding a new sample in, is safe
// for concurrent use and returns when ctx ends.
type pinger interface {
	Ping(ctx context.Context, p peer.ID) (time.Duration, error)
}

var _ pinger = (*rtt.Tracker)(nil)

// rttBook is what the agent knows of the other allocators: who they are
// (the registry's node list), when each was last pinged, whether it
// answered, and the RTT last settled for each, published or not. The RTT
// loop owns it: not safe for concurrent use.
type rttBook struct {
	peers map[string]*peerEntry
	round int // rounds picked so far
}

type peerEntry struct {
	id    peer.ID
	tried int      // the round it was last pinged in; 0: never
	fails int      // pings failed in a row
	rtt   *float64 // settled (ms); nil until it answers, and after it drops out
	// measured is the last measure (ms) and dev the mean deviation of
	// the measure from one measurement to the next; valid with rtt.
	measured, dev float64
}

func newRTTBook() *rttBook {
	return &rttBook{peers: map[string]*peerEntry{}}
}

// setPeers makes ids the peers known: new ones are added, and those no
// longer listed (their node's lease ran out) are forgotten.
func (b *rttBook) setPeers(ids []peer.ID) {
	listed := make(map[string]bool, len(ids))
	for _, id := range ids {
		k := id.String()
		listed[k] = true
		if b.peers[k] == nil {
			b.peers[k] = &peerEntry{id: id}
		}
	}
	for k := range b.peers {
		if !listed[k] {
			delete(b.peers, k)
		}
	}
}

// pick starts a round and lists the peers it pings, at most limit: those
// pinged longest ago (never, first), nearest first among equals. Call
// tried for each one pinged.
func (b *rttBook) pick(limit int) []peer.ID {
	b.round++
	es := make([]*peerEntry, 0, len(b.peers))
	for _, e := range b.peers {
		es = append(es, e)
	}
	slices.SortFunc(es, func(x, y *peerEntry) int {
		if c := cmp.Compare(x.tried, y.tried); c != 0 {
			return c
		}
		switch {
		case x.rtt != nil && y.rtt != nil:
			return cmp.Or(cmp.Compare(*x.rtt, *y.rtt), cmp.Compare(x.id, y.id))
		case x.rtt != nil:
			return -1
		case y.rtt != nil:
			return 1
		}
		return cmp.Compare(x.id, y.id)
	})
	out := make([]peer.ID, 0, min(limit, len(es)))
	for _, e := range es[:min(limit, len(es))] {
		out = append(out, e.id)
	}
	return out
}

// tried records that id was pinged in this round: it answered with a
// smoothed RTT of ms, or failed (ok false).
func (b *rttBook) tried(id peer.ID, ms float64, ok bool) {
	e := b.peers[id.String()]
	if e == nil {
		return // forgotten meanwhile
	}
	e.tried = b.round
	if !ok {
		if e.fails++; e.fails >= rttDropFails {
			e.rtt = nil // when it answers again, it is published afresh
		}
		return
	}
	e.fails = 0
	if e.rtt == nil { // its first answer, or its first since it dropped out
		e.dev = 0
	} else {
		// This measure's move counts in the band it is judged by: one
		// outlying measure widens its own band and publishes nothing,
		// while a move that lasts shows at the next.
		e.dev = (1-rttDevWeight)*e.dev + rttDevWeight*math.Abs(ms-e.measured)
	}
	e.rtt = settleRTT(e.rtt, ms, e.dev)
	e.measured = ms
}

// publish returns the RTTs to publish: the registry.MaxNodeRTTs nearest
// peers with a settled RTT, nearest first (ties by peer ID).
func (b *rttBook) publish() []registry.PeerRTT {
	var out []registry.PeerRTT
	for k, e := range b.peers {
		if e.rtt != nil {
			out = append(out, registry.PeerRTT{PeerID: k, RTT: *e.rtt})
		}
	}
	return capRTTs(out, registry.MaxNodeRTTs)
}

// capRTTs sorts rtts nearest first (ties by peer ID) and keeps the first
// limit.
func capRTTs(rtts []registry.PeerRTT, limit int) []registry.PeerRTT {
	slices.SortFunc(rtts, func(x, y registry.PeerRTT) int {
		return cmp.Or(cmp.Compare(x.RTT, y.RTT), cmp.Compare(x.PeerID, y.PeerID))
	})
	if len(rtts) > limit {
		rtts = rtts[:limit]
	}
	return rtts
}

// settleRTT returns the RTT to publish for a measure of v ms whose mean
// deviation from one measurement to the next is dev: last, while v is no
// more than registry.RTTStep, registry.RTTStepRatio of last and
// rttDeviations times dev away from it; else v to 0.1 ms. Jitter within
// that band leaves the node record as it was; a peer that really moves
// shows within a measurement or two (the measure is smoothed).
func settleRTT(last *float64, v, dev float64) *float64 {
	if last != nil && math.Abs(v-*last) <= max(registry.RTTStep, registry.RTTStepRatio**last, rttDeviations*dev) {
		return last
	}
	r := math.Round(v*10) / 10
	return &r
}

// nodeRTTs is the RTTs of the node record: what the last round settled.
func (a *Agent) nodeRTTs() []registry.PeerRTT {
	a.rttMu.Lock()
	defer a.rttMu.Unlock()
	return slices.Clone(a.rtts)
}

// rttLoop measures the RTT to other allocators every third of the lease
// (the heartbeat's cadence, spread the same way). It reads the node list
// at once at start (again each round until a read succeeds), then after
// one round, two, four and so on up to Config.PeerListEvery: allocators
// started together find each other within seconds, and a settled one
// reads the list every PeerListEvery.
func (a *Agent) rttLoop(ctx context.Context) {
	book := newRTTBook()
	every := a.cfg.LeaseTTL / 3
	var listedAt time.Time
	listEvery := min(every, a.cfg.PeerListEvery)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if listedAt.IsZero() || time.Since(listedAt) >= listEvery-every/10 {
			if a.learnPeers(ctx, book, every) {
				if !listedAt.IsZero() {
					listEvery = min(2*listEvery, a.cfg.PeerListEvery)
				}
				listedAt = time.Now()
			}
		}
		measurePeers(ctx, a.node.RTT(), book, every)
		pub := book.publish()
		a.rttMu.Lock()
		a.rtts = pub
		a.rttMu.Unlock()
		timer.Reset(every - every/10 + time.Duration(rand.Int64N(int64(every/5)+1)))
	}
}

// learnPeers reads the node list, within timeout, and makes its other
// nodes the book's peers, their addresses known to the host. It reports
// whether the list was read.
func (a *Agent) learnPeers(ctx context.Context, book *rttBook, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nodes, err := a.reg.ListNodesBrief(ctx)
	if err != nil {
		// The publish loop warns about a registry that does not answer;
		// the known peers are measured meanwhile.
		a.log.Debug("list nodes to measure RTTs", "err", err)
		return false
	}
	self := a.node.ID()
	ps := a.node.Host().Peerstore()
	ttl := max(peerstore.TempAddrTTL, 2*a.cfg.PeerListEvery)
	ids := make([]peer.ID, 0, len(nodes))
	for _, n := range nodes {
		id, err := peer.Decode(n.PeerID)
		if err != nil || id == self {
			continue
		}
		for _, s := range n.Addrs {
			if m, err := ma.NewMultiaddr(s); err == nil {
				ps.AddAddr(id, m, ttl)
			}
		}
		ids = append(ids, id)
	}
	book.setPeers(ids)
	return true
}

// measurePeers runs a round: it pings the peers the book picks, at most
// maxRTTPeersPerRound, maxRTTPings at a time, within timeout, and records
// what each ping said. A peer whose ping the round's end (or ctx) cut
// short, or never started, counts as not pinged: it keeps its turn.
func measurePeers(ctx context.Context, p pinger, book *rttBook, timeout time.Duration) {
	ids := book.pick(maxRTTPeersPerRound)
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type outcome int
	const (
		notPinged outcome = iota
		answered
		failed
	)
	rtts := make([]time.Duration, len(ids))
	outs := make([]outcome, len(ids))
	sem := make(chan struct{}, maxRTTPings)
	var wg sync.WaitGroup
loop:
	for i, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d, err := p.Ping(ctx, id)
			switch {
			case err == nil:
				rtts[i], outs[i] = d, answered
			case ctx.Err() == nil: // the peer's own timeout, or a refusal
				outs[i] = failed
			}
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if outs[i] != notPinged {
			book.tried(id, rtt.FromDuration(rtts[i]).RTT, outs[i] == answered)
		}
	}
}
