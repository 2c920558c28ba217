package p2p

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

// maxProviders bounds one lookup's answers: far above any network we aim
// at, and still a bound on what a peer can make us hold.
const maxProviders = 4096

// FindPeers looks ns up once and returns the peers advertising it, this
// node excluded (the DHT returns our own record too). Peers are not dialled;
// a record may belong to a node that has since died.
func (n *Node) FindPeers(ctx context.Context, ns string) ([]peer.AddrInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timing.FindTimeout)
	defer cancel()
	ch, err := n.disc.FindPeers(ctx, ns, discovery.Limit(maxProviders))
	if err != nil {
		n.metrics.lookedUp("error")
		return nil, fmt.Errorf("find peers under %q: %w", ns, err)
	}
	var out []peer.AddrInfo
	for ai := range ch {
		if ai.ID == n.host.ID() || ai.ID == "" {
			continue
		}
		out = append(out, ai)
	}
	n.metrics.lookedUp("ok")
	return out, nil
}

// Peer is a peer found under a rendezvous, with its measured RTT.
type Peer struct {
	peer.AddrInfo
	// RTT is the smoothed round-trip time; 0 until one was measured.
	RTT time.Duration
}

// Discovery keeps looking a namespace up and holds the reachable peers
// found, with their RTTs. Get one from Node.Discover.
type Discovery struct {
	n    *Node
	ns   string
	kick chan struct{}
	stop context.CancelFunc
	done chan struct{}

	mu      sync.Mutex
	peers   map[peer.ID]*found
	changed chan struct{} // closed and replaced whenever peers changes
	rounds  int
}

type found struct {
	info    peer.AddrInfo
	rtt     time.Duration
	lastHit time.Time // last lookup that returned it
}

// Discover starts a renewing lookup of ns: every Timing.FindEvery (or at
// Refresh) it finds the peers advertising ns, connects to them, measures
// their RTT in parallel, and keeps those it reached. Close it when done;
// Node.Close closes it too.
func (n *Node) Discover(ns string) *Discovery {
	ctx, cancel := context.WithCancel(n.ctx)
	d := &Discovery{
		n: n, ns: ns, kick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{}),
		peers: make(map[peer.ID]*found), changed: make(chan struct{}),
	}
	// Under n.mu, as Advertise: a closed node starts no lookup (its
	// WaitGroup has been waited for), and hands back one that finds
	// nothing and is closed already.
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		cancel()
		close(d.done)
		return d
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(d.done)
		d.loop(ctx)
	}()
	return d
}

// Close stops the lookups and waits for the loop to end.
func (d *Discovery) Close() {
	d.stop()
	<-d.done
}

func (d *Discovery) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.peers)
}

// Refresh asks for a lookup now.
func (d *Discovery) Refresh() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Peers returns the reachable peers found, nearest first (peers with no
// RTT yet last).
func (d *Discovery) Peers() []Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Peer, 0, len(d.peers))
	for _, f := range d.peers {
		out = append(out, Peer{AddrInfo: f.info, RTT: f.rtt})
	}
	slices.SortFunc(out, func(a, b Peer) int {
		switch {
		case a.RTT == b.RTT:
			return 0
		case a.RTT == 0:
			return 1
		case b.RTT == 0:
			return -1
		case a.RTT < b.RTT:
			return -1
		}
		return 1
	})
	return out
}

// WaitFor blocks until ok holds for the current peers or ctx ends.
func (d *Discovery) WaitFor(ctx context.Context, ok func([]Peer) bool) ([]Peer, error) {
	for {
		d.mu.Lock()
		ch := d.changed
		d.mu.Unlock()
		if ps := d.Peers(); ok(ps) {
			return ps, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return d.Peers(), fmt.Errorf("wait for peers under %q: %w", d.ns, ctx.Err())
		case <-d.done:
			return d.Peers(), fmt.Errorf("wait for peers under %q: discovery closed", d.ns)
		}
	}
}

func (d *Discovery) loop(ctx context.Context) {
	t := d.n.cfg.Timing
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Right after start, and when the set empties, look again soon,
	// backing off (doubling) towards FindEvery: peers that start with us
	// advertise a moment later, and a newcomer should not wait a period
	// for them. A namespace nobody advertises costs a lookup per FindEvery
	// once the backoff is over, not one every few milliseconds.
	eager := t.RoutingTableWait
	had := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.kick:
		}
		if d.n.dht.RoutingTable().Size() > 0 {
			d.round(ctx)
		}
		has := d.size() > 0
		if had && !has {
			eager = t.RoutingTableWait // just lost them all: look hard again
		}
		had = has
		timer.Reset(min(eager, t.FindEvery))
		eager = min(eager*2, t.FindEvery)
	}
}

// round does one lookup, dials and measures what it found, and updates the
// peer set. A peer missing from one lookup is kept while still connected,
// for up to three lookup periods: records take a moment to spread, and a
// set that flaps is worse than one that lags a little.
func (d *Discovery) round(ctx context.Context) {
	infos, err := d.n.FindPeers(ctx, d.ns)
	if err != nil {
		d.n.log.Debug("lookup failed", "namespace", d.ns, "err", err)
		return
	}
	reached := d.connectAll(ctx, infos)
	ids := make([]peer.ID, 0, len(reached))
	for _, ai := range reached {
		ids = append(ids, ai.ID)
	}
	rtts := d.n.rtt.Measure(ctx, ids)
	if ctx.Err() != nil {
		return
	}

	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	before := len(d.peers)
	for i, ai := range reached {
		f := d.peers[ai.ID]
		if f == nil {
			f = &found{}
			d.peers[ai.ID] = f
		}
		f.info, f.lastHit = ai, now
		if rtts[i].Err == nil {
			f.rtt = rtts[i].RTT
		}
	}
	stale := 3 * d.n.cfg.Timing.FindEvery
	for id, f := range d.peers {
		connected := d.n.host.Network().Connectedness(id) == network.Connected
		if !connected || now.Sub(f.lastHit) > stale {
			delete(d.peers, id)
		}
	}
	d.rounds++
	if len(d.peers) != before || len(reached) > 0 || d.rounds == 1 {
		close(d.changed)
		d.changed = make(chan struct{})
	}
}

// connectAll dials every peer in parallel and returns those it reached.
func (d *Discovery) connectAll(ctx context.Context, infos []peer.AddrInfo) []peer.AddrInfo {
	ok := make([]bool, len(infos))
	var wg sync.WaitGroup
	for i, ai := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, d.n.cfg.Timing.DialTimeout)
			defer cancel()
			if len(ai.Addrs) == 0 && d.n.host.Network().Connectedness(ai.ID) != network.Connected {
				// A record without addresses: ask the DHT where the peer is.
				if full, err := d.n.dht.FindPeer(cctx, ai.ID); err == nil {
					ai = full
				}
			}
			ok[i] = d.n.host.Connect(cctx, ai) == nil
		}()
	}
	wg.Wait()
	var out []peer.AddrInfo
	for i, ai := range infos {
		if ok[i] {
			out = append(out, ai)
		}
	}
	return out
}

// NamespaceKey is the DHT key under which advertisements of ns are stored
// (what routing discovery provides): useful to inspect a node's records.
func NamespaceKey(ns string) multihash.Multihash {
	h, _ := multihash.Sum([]byte(ns), multihash.SHA2_256, -1) // cannot fail for SHA2-256
	return h
}
