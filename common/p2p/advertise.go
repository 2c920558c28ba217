package p2p

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/discovery"

	"github.com/physarum-p2p/physarum/common/backoff"
)

// advert is one namespace's renewing advertisement.
type advert struct {
	kick   chan struct{} // renew now (buffered, 1)
	cancel context.CancelFunc
}

// Advertise announces this node under namespace ns, and keeps announcing:
// the loop waits for a first peer in the routing table (advertising into an
// empty one fails), renews every Timing.AdvertiseEvery, and renews at once
// after a bootstrap peer is reconnected. Calling it again for the same ns
// does nothing.
func (n *Node) Advertise(ns string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.advertised[ns] != nil {
		return
	}
	ctx, cancel := context.WithCancel(n.ctx)
	a := &advert{kick: make(chan struct{}, 1), cancel: cancel}
	n.advertised[ns] = a
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.advertiseLoop(ctx, ns, a.kick)
	}()
}

// AdvertiseNow is Advertise without the first random pause: for a record
// others wait for (an image a node just took), not for announcements that
// every node makes at start.
func (n *Node) AdvertiseNow(ns string) {
	n.Advertise(ns)
	n.mu.Lock()
	defer n.mu.Unlock()
	if a := n.advertised[ns]; a != nil {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// StopAdvertising ends the advertisement loop for ns. Records already on
// other nodes expire after Timing.ProvideValidity.
func (n *Node) StopAdvertising(ns string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a := n.advertised[ns]; a != nil {
		a.cancel()
		delete(n.advertised, ns)
	}
}

// renewAll asks every advertisement loop to renew now.
func (n *Node) renewAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range n.advertised {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

func (n *Node) advertiseLoop(ctx context.Context, ns string, kick <-chan struct{}) {
	t := n.cfg.Timing
	log := n.log.With("namespace", ns)
	retry := backoff.Backoff{Min: t.ReconnectMin, Max: t.ReconnectMax}
	// A random pause first: nodes started together must not all provide
	// at once (each provide dials the peers closest to the key).
	timer := time.NewTimer(time.Duration(rand.Int64N(int64(t.AdvertiseJitter) + 1)))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-kick:
		}
		if n.dht.RoutingTable().Size() == 0 {
			timer.Reset(t.RoutingTableWait)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, t.FindTimeout)
		_, err := n.disc.Advertise(actx, ns, discovery.TTL(t.ProvideValidity))
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			wait := retry.Next()
			log.Debug("advertise failed; retrying", "err", err, "retry_in", wait)
			n.metrics.advertised("error")
			timer.Reset(wait)
			continue
		}
		log.Debug("advertised")
		retry.Reset()
		n.metrics.advertised("ok")
		timer.Reset(t.AdvertiseEvery)
	}
}
