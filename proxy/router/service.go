package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/common/p2p"

	"github.com/physarum-p2p/physarum/registry"
)

// infoTTL is how long a service's definition is trusted before it is read
// again (its requirements may change).
const infoTTL = 10 * time.Second

// service is the router's state for one service.
type service struct {
	name string
	// ready is closed once set-up is over; setupErr and watch are set
	// before it and never change after.
	ready    chan struct{}
	setupErr error
	watch    InstanceWatch
	disc     PeerSet

	mu          sync.Mutex
	info        registry.ServiceInfo
	infoAt      time.Time
	rereading   bool // a reread of info is under way
	deleted     bool // the last reread found no such service
	byPeer      map[peer.ID]*target
	lastUsed    time.Time
	farSince    time.Time // best instance outside the soft RTT since then
	alloc       *allocation
	upgrading   bool
	nextUpgrade time.Time // no nearer-instance attempt before then
}

// allocation is one request for a new instance that concurrent requests
// share.
type allocation struct {
	done chan struct{}
	err  error
}

func newService(name string, now time.Time) *service {
	return &service{name: name, ready: make(chan struct{}), byPeer: map[peer.ID]*target{}, lastUsed: now}
}

func (s *service) clientMode() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info.ProxyClientMode
}

func (s *service) touch(now time.Time) {
	s.mu.Lock()
	s.lastUsed = now
	s.mu.Unlock()
}

// refreshInfo rereads the definition when it is old, in the background:
// a request never waits for the registry while a definition is known
// (with the registry down, it would wait for nothing). On failure the old
// definition stays; a service deleted from the registry is unknown from
// the next request on.
func (s *service) refreshInfo(r *Router) error {
	s.mu.Lock()
	stale := r.now().Sub(s.infoAt) > infoTTL && !s.rereading
	deleted := s.deleted
	s.rereading = s.rereading || stale
	s.mu.Unlock()
	if deleted {
		return fmt.Errorf("%w %q", ErrUnknownService, s.name)
	}
	if stale && !r.startGoroutine(func() { s.reread(r) }) {
		s.mu.Lock()
		s.rereading = false
		s.mu.Unlock()
	}
	return nil
}

// reread reads the definition again; on any outcome the next try is
// infoTTL later.
func (s *service) reread(r *Router) {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	info, err := r.reg.GetService(ctx, s.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rereading, s.infoAt = false, r.now()
	switch {
	case err == nil:
		s.info, s.deleted = info, false
	case errors.Is(err, registry.ErrNotFound):
		s.deleted = true
	default:
		r.log.Debug("could not reread the service; going on with the one known", "service", s.name, "err", err)
	}
}

// sync makes the targets follow the registry's running instances of the
// versions the route lets serve, the proxies advertising the service on
// the DHT, and those this router just allocated (until the watch reports
// them). An instance the route takes out of service gets no new request;
// those in flight on it finish there.
func (s *service) sync(r *Router) {
	now := r.now()
	route := s.watch.Route()
	insts := s.watch.Instances()
	// An allocator's instance also advertises on the DHT: its record is
	// what counts (its state, its version), the DHT only finds the
	// proxies no record names.
	recorded := map[string]bool{}
	for _, in := range insts {
		recorded[in.PeerID] = true
	}
	for _, p := range s.disc.Peers() {
		if recorded[p.ID.String()] {
			continue
		}
		var addrs []string
		for _, a := range p.Addrs {
			addrs = append(addrs, a.String())
		}
		insts = append(insts, registry.Instance{ID: "dht-" + p2p.ShortID(p.ID), Service: s.name, State: registry.StateRunning,
			PeerID: p.ID.String(), Addrs: addrs, Started: now})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[peer.ID]bool{}
	for _, in := range insts {
		if in.State != registry.StateRunning {
			continue
		}
		id, err := peer.Decode(in.PeerID)
		if err != nil {
			continue
		}
		if !route.Serves(in.Version) {
			delete(s.byPeer, id) // at once: standing by is not being gone
			continue
		}
		seen[id] = true
		if t := s.byPeer[id]; t != nil {
			t.inst.Store(&in)
			continue
		}
		s.byPeer[id] = r.newTarget(in, id)
	}
	for id, t := range s.byPeer {
		if !seen[id] && now.Sub(t.inst.Load().Started) > 5*time.Second {
			delete(s.byPeer, id) // gone from the registry (and not just added by us)
		}
	}
}

func (s *service) add(r *Router, in registry.Instance) {
	id, err := peer.Decode(in.PeerID)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byPeer[id] == nil {
		in.Started = r.now() // keep it until the watch catches up
		s.byPeer[id] = r.newTarget(in, id)
	}
}

func (s *service) targets() []*target {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*target, 0, len(s.byPeer))
	for _, t := range s.byPeer {
		out = append(out, t)
	}
	return out
}

// choose applies the selection rule and claims the chosen target (one
// more request in flight). It returns nil when no instance is within the
// hard RTT. When the best it has is outside the soft RTT for longer than
// UpgradeAfter, it asks for a nearer instance in the background.
func (s *service) choose(r *Router) *Target {
	s.mu.Lock()
	soft, hard := s.info.NetworkSoftReq.Duration(), s.info.NetworkHardReq.Duration()
	now := r.now()
	var near, far, blind []*target
	for _, t := range s.byPeer {
		if t.dead(now) {
			continue
		}
		d, ok := r.rtt(t.peer)
		switch {
		case !ok && hard == 0:
			blind = append(blind, t) // any instance is within no requirement
		case !ok:
			continue // not measured yet: never used blind when the RTT matters
		case hard > 0 && d > hard:
			continue
		case soft == 0 || d <= soft:
			near = append(near, t)
		default:
			far = append(far, t)
		}
	}
	pool := near
	if len(near)+len(far) == 0 {
		// Nothing measured (pings lost on an overloaded host, or not
		// answered yet): a service with no hard RTT takes any instance
		// rather than starting one it could not measure either.
		pool = blind
	} else if len(near) > 0 {
		s.farSince = time.Time{}
	} else if len(far) > 0 {
		pool = far
		if s.farSince.IsZero() {
			s.farSince = now
		}
		if now.Sub(s.farSince) > r.cfg.UpgradeAfter && now.After(s.nextUpgrade) && !s.upgrading && s.alloc == nil {
			s.upgrading = r.startGoroutine(func() {
				err := r.upgrade(s)
				s.mu.Lock()
				defer s.mu.Unlock()
				s.upgrading, s.farSince = false, time.Time{}
				if err != nil {
					// No node within the soft RTT has room now: look again
					// later, not on every request.
					s.nextUpgrade = r.now().Add(r.cfg.UpgradeBackoff)
				}
			})
		}
	}
	s.mu.Unlock()
	// In a fixed order, so that the same draws make the same choice.
	slices.SortFunc(pool, func(a, b *target) int { return strings.Compare(string(a.peer), string(b.peer)) })
	t := twoChoices(pool, r.rand)
	if t == nil {
		return nil
	}
	t.inFlight.Add(1)
	d, _ := r.rtt(t.peer)
	return &Target{Peer: t.peer, Instance: *t.inst.Load(), RTT: d, t: t}
}

// twoChoices picks two targets at random (rand(n) draws from [0, n)) and
// returns the one with fewer requests in flight: load stays within a
// small factor of even without any coordination.
func twoChoices(pool []*target, rand func(n int) int) *target {
	switch len(pool) {
	case 0:
		return nil
	case 1:
		return pool[0]
	}
	i := rand(len(pool))
	j := rand(len(pool) - 1)
	if j >= i {
		j++
	}
	a, b := pool[i], pool[j]
	if b.inFlight.Load() < a.inFlight.Load() {
		return b
	}
	return a
}

// allocate asks for a new instance near this proxy, once for all callers
// that need one now: the first starts it, the others wait for its outcome
// (bounded by their context and Config.AllocTimeout).
func (s *service) allocate(ctx context.Context, r *Router, why string) error {
	s.mu.Lock()
	a := s.alloc
	if a == nil {
		a = &allocation{done: make(chan struct{})}
		info := s.startInfo()
		started := r.startGoroutine(func() {
			a.err = r.allocate(s, info, why, deploy.PlaceOptions{OnDemand: true})
			s.mu.Lock()
			s.alloc = nil
			s.mu.Unlock()
			close(a.done)
		})
		if !started {
			s.mu.Unlock()
			return fmt.Errorf("%s: start an instance: %w", s.name, ErrClosed)
		}
		s.alloc = a
	}
	s.mu.Unlock()
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: waiting for a new instance: %w", ErrAllocation, s.name, ctx.Err())
	}
}

// startInfo is the definition a new instance starts from: the route's
// while it names one (the serving set's, before a blue-green rollout's
// switch), else the current one. Called with s.mu held.
func (s *service) startInfo() registry.ServiceInfo {
	if rt := s.watch.Route(); rt.Start != nil {
		return *rt.Start
	}
	return s.info
}

// upgrade asks for an instance within the soft RTT, in the background,
// while requests go on to the instance between soft and hard.
func (r *Router) upgrade(s *service) error {
	s.mu.Lock()
	info := s.startInfo()
	s.mu.Unlock()
	return r.allocate(s, info, "nearest instance outside the soft RTT", deploy.PlaceOptions{OnDemand: true, SoftOnly: true})
}

// allocate places one instance and adds it to s.
func (r *Router) allocate(s *service, info registry.ServiceInfo, why string, opts deploy.PlaceOptions) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.AllocTimeout)
	defer cancel()
	start := r.now()
	r.log.Info("asking for an instance", "service", s.name, "reason", why)
	resp, err := r.placer.Place(ctx, s.name, &info, opts)
	if err != nil {
		r.outcome(s.name, "refused")
		r.log.Warn("no instance could be started", "service", s.name, "err", err)
		return fmt.Errorf("%w: %s: %w", ErrAllocation, s.name, err)
	}
	r.outcome(s.name, "ok")
	r.log.Info("instance ready", "service", s.name, "instance", resp.Instance.ID,
		"node", resp.Instance.Node, "reused", resp.Reused, "took", r.now().Sub(start))
	s.add(r, *resp.Instance)
	r.measure(ctx, s)
	return nil
}

func (r *Router) outcome(service, o string) {
	if r.cfg.OnAllocate != nil {
		r.cfg.OnAllocate(service, o)
	}
}

// loop keeps a service's targets and RTTs current while it is in use,
// and ends it when it has been idle for Config.IdleAfter.
func (s *service) loop(r *Router) {
	tick := time.NewTicker(r.cfg.MeasureEvery)
	defer tick.Stop()
	for {
		changed := s.watch.Changed()
		select {
		case <-r.ctx.Done():
			return
		case <-changed:
			s.sync(r)
			r.measure(r.ctx, s)
		case <-tick.C:
			s.mu.Lock()
			idle := r.now().Sub(s.lastUsed) > r.cfg.IdleAfter
			s.mu.Unlock()
			if idle {
				r.forget(s)
				return
			}
			s.sync(r)
			r.measure(r.ctx, s)
		}
	}
}

// forget drops an idle service; the next request sets it up again.
func (r *Router) forget(s *service) {
	r.mu.Lock()
	if r.services[s.name] == s {
		delete(r.services, s.name)
	}
	r.mu.Unlock()
	s.watch.Close()
	s.disc.Close()
}
