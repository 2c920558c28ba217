package p2p

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/backoff"
)

// bootstrapper keeps the node connected to its bootstrap peers. A lost
// peer is retried with capped exponential backoff; each time one is
// (re)connected, advertisements are renewed at once, since a restarted
// bootstrap peer has forgotten them.
type bootstrapper struct {
	n     *Node
	peers []*bootPeer

	first     chan struct{} // closed when the first round is over
	firstOnce sync.Once
	joined    chan struct{} // closed once a bootstrap peer was reached
	joinOnce  sync.Once
	mu        sync.Mutex
	firstErr  error
}

type bootPeer struct {
	info    peer.AddrInfo
	retry   backoff.Backoff
	next    time.Time
	lastErr error
}

func newBootstrapper(n *Node) *bootstrapper {
	b := &bootstrapper{n: n, first: make(chan struct{}), joined: make(chan struct{})}
	for _, ai := range n.cfg.Bootstraps {
		if ai.ID == n.host.ID() {
			continue // a node may be given its own address in a shared list
		}
		retry := backoff.Backoff{Min: n.cfg.Timing.ReconnectMin, Max: n.cfg.Timing.ReconnectMax}
		b.peers = append(b.peers, &bootPeer{info: ai, retry: retry})
		n.host.ConnManager().Protect(ai.ID, "bootstrap")
	}
	return b
}

func (b *bootstrapper) wait(ctx context.Context) error {
	select {
	case <-b.first:
	case <-ctx.Done():
		return fmt.Errorf("wait for bootstrap: %w", ctx.Err())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.firstErr
}

func (b *bootstrapper) finishFirstRound(err error) {
	b.firstOnce.Do(func() {
		b.mu.Lock()
		b.firstErr = err
		b.mu.Unlock()
		close(b.first)
	})
}

func (b *bootstrapper) run(ctx context.Context) {
	if len(b.peers) == 0 {
		b.finishFirstRound(nil)
		b.joinOnce.Do(func() { close(b.joined) })
		return
	}
	sub, err := b.n.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		b.finishFirstRound(fmt.Errorf("subscribe to connection events: %w", err))
		return
	}
	defer sub.Close()

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			b.finishFirstRound(ctx.Err())
			return
		case ev := <-sub.Out():
			// A lost bootstrap peer is retried at once, then with backoff.
			e := ev.(event.EvtPeerConnectednessChanged)
			if e.Connectedness == network.Connected || !b.isBootstrap(e.Peer) {
				continue
			}
			b.n.log.Info("lost bootstrap peer; reconnecting", "peer", e.Peer)
		case <-timer.C:
		}
		wait := b.round(ctx)
		timer.Reset(wait)
	}
}

func (b *bootstrapper) isBootstrap(p peer.ID) bool {
	for _, bp := range b.peers {
		if bp.info.ID == p {
			return true
		}
	}
	return false
}

// round dials, in parallel, every bootstrap peer that is not connected and
// whose backoff has passed. It returns how long to wait before the next
// round.
func (b *bootstrapper) round(ctx context.Context) time.Duration {
	h := b.n.host
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	reconnected := 0
	for _, bp := range b.peers {
		if h.Network().Connectedness(bp.info.ID) == network.Connected {
			bp.retry.Reset()
			bp.lastErr = nil
			continue
		}
		if now.Before(bp.next) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := b.connect(ctx, bp.info)
			mu.Lock()
			defer mu.Unlock()
			bp.lastErr = err
			if err == nil {
				bp.retry.Reset()
				reconnected++
				return
			}
			bp.next = time.Now().Add(bp.retry.Next())
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return time.Hour
	}

	connected := 0
	var errs []string
	for _, bp := range b.peers {
		if h.Network().Connectedness(bp.info.ID) == network.Connected {
			connected++
		} else if bp.lastErr != nil {
			// libp2p's dial errors span lines; a user gets one.
			errs = append(errs, fmt.Sprintf("%s: %s", ShortID(bp.info.ID), strings.Join(strings.Fields(bp.lastErr.Error()), " ")))
		}
	}
	if connected > 0 {
		b.finishFirstRound(nil)
		b.joinOnce.Do(func() { close(b.joined) })
	} else {
		err := fmt.Errorf("%w (tried %d: %s)", ErrNoBootstrap, len(b.peers), strings.Join(errs, "; "))
		b.finishFirstRound(err)
		b.n.log.Warn("no bootstrap peer reachable; retrying", "err", err)
	}
	if reconnected > 0 {
		b.n.log.Info("connected to bootstrap peers", "connected", connected, "of", len(b.peers))
		b.n.renewAll()
	}
	return b.nextWake()
}

func (b *bootstrapper) connect(ctx context.Context, ai peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(ctx, b.n.cfg.Timing.DialTimeout)
	defer cancel()
	// We keep our own backoff; the swarm's would delay a restarted peer.
	ctx = network.WithForceDirectDial(ctx, "bootstrap")
	if err := b.n.host.Connect(ctx, ai); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s", b.n.cfg.Timing.DialTimeout)
		}
		return err
	}
	return nil
}

// nextWake is when the earliest backoff expires, or a long check interval
// when every peer is connected (disconnect events wake the loop earlier).
func (b *bootstrapper) nextWake() time.Duration {
	wait := b.n.cfg.Timing.ReconnectMax
	now := time.Now()
	for _, bp := range b.peers {
		if b.n.host.Network().Connectedness(bp.info.ID) == network.Connected {
			continue
		}
		if d := bp.next.Sub(now); d < wait {
			wait = max(d, 0)
		}
	}
	return wait
}
