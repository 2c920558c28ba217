// Package router chooses, for each request a proxy forwards, the instance
// of the service to send it to: a running instance within the service's
// hard RTT, preferably within its soft RTT, spreading load between those
// that qualify (power of two choices on requests in flight). When none is
// within the hard RTT it asks for a new instance near this proxy, once for
// all the requests waiting on it; when the best is only between soft and
// hard for a while, it asks for a nearer one in the background.
//
// Instances come from the registry (a watch per service, so a new
// instance is seen within milliseconds of its allocator publishing it);
// RTTs to them are measured in parallel and refreshed while the service is
// in use. An instance that fails a request is out of rotation for a while.
//
// The Router reads the registry, measures RTTs and asks for instances
// through the small interfaces of Deps; New wires the real ones.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/registry"
)

// Config tunes a Router. Zero fields take the defaults.
type Config struct {
	// AllocTimeout bounds waiting for an on-demand instance (default 15s).
	AllocTimeout time.Duration
	// MeasureEvery is how often RTTs to a service's instances are measured
	// while the service is in use (default 500ms).
	MeasureEvery time.Duration
	// UpgradeAfter is how long the best instance may stay between the soft
	// and hard RTT before a nearer one is asked for (default 3s).
	UpgradeAfter time.Duration
	// UpgradeBackoff is how long to wait before asking again for a nearer
	// instance when no node within the soft RTT could start one
	// (default 30s).
	UpgradeBackoff time.Duration
	// DeadFor is how long an instance that failed is out of rotation
	// (default 10s).
	DeadFor time.Duration
	// IdleAfter ends the watch and measurements of a service not used for
	// this long (default 5m).
	IdleAfter time.Duration
	// Logger receives the router's events.
	Logger *slog.Logger
	// OnAllocate, when set, is told of every allocation asked for (metrics).
	OnAllocate func(service, outcome string)
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.AllocTimeout, 15*time.Second)
	def(&c.MeasureEvery, 500*time.Millisecond)
	def(&c.UpgradeAfter, 3*time.Second)
	def(&c.UpgradeBackoff, 30*time.Second)
	def(&c.DeadFor, 10*time.Second)
	def(&c.IdleAfter, 5*time.Minute)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Router picks instances. Safe for concurrent use.
type Router struct {
	cfg    Config
	log    *slog.Logger
	reg    Registry
	placer Placer
	probe  Prober
	dht    Discoverer
	// now and rand are the clock and the source of the two choices
	// (time.Now and rand.N); tests replace them before the first Pick.
	now  func() time.Time
	rand func(n int) int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool // no goroutine starts once set (see startGoroutine)
	services map[string]*service
}

// New returns a Router on NodeDeps(n, reg, cfg.Logger).
func New(n *p2p.Node, reg *registry.Client, cfg Config) *Router {
	return NewFrom(NodeDeps(n, reg, cfg.Logger), cfg)
}

// NewFrom returns a Router working with d.
func NewFrom(d Deps, cfg Config) *Router {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Router{
		cfg: cfg, log: cfg.Logger, reg: d.Registry, placer: d.Placer, probe: d.Prober, dht: d.Discoverer,
		now: time.Now, rand: rand.N[int],
		ctx: ctx, cancel: cancel, services: map[string]*service{},
	}
}

// Close stops every watch and measurement loop and waits for them. Pick
// fails with ErrClosed from then on. Close may be called more than once.
func (r *Router) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	services := r.services
	r.services = map[string]*service{} // the next Close has none to close
	r.mu.Unlock()
	for _, s := range services {
		if s.watch != nil {
			s.watch.Close()
			s.disc.Close()
		}
	}
}

// startGoroutine runs f in a goroutine Close waits for, unless the router is closed:
// then it starts nothing and returns false. Callers may hold a service's
// lock (never the other way round).
func (r *Router) startGoroutine(f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
	return true
}

// Target is a chosen instance. Call Done when the request is over.
type Target struct {
	// Peer is the instance's proxy.
	Peer peer.ID
	// Instance is its registry record.
	Instance registry.Instance
	// RTT is the smoothed RTT to it.
	RTT time.Duration

	t    *target
	done func(failed bool) // instead of t, see NewTarget
}

// NewTarget returns a Target that no Router chose, whose Done calls done:
// for other pickers of instances, such as the fakes in tests.
func NewTarget(p peer.ID, in registry.Instance, done func(failed bool)) *Target {
	return &Target{Peer: p, Instance: in, done: done}
}

// Done reports how the request went: a failed instance is taken out of
// rotation for Config.DeadFor.
func (t *Target) Done(failed bool) {
	if t.done != nil {
		t.done(failed)
		return
	}
	t.t.inFlight.Add(-1)
	if failed {
		t.t.deadUntil.Store(t.t.now().UnixNano() + int64(t.t.deadFor))
	}
}

// target is what the router knows of one instance.
type target struct {
	inst      atomic.Pointer[registry.Instance] // replaced whole as the registry updates it
	peer      peer.ID
	inFlight  atomic.Int64
	deadUntil atomic.Int64 // unix ns
	deadFor   time.Duration
	now       func() time.Time
}

func (t *target) dead(now time.Time) bool { return t.deadUntil.Load() > now.UnixNano() }

func (r *Router) newTarget(in registry.Instance, id peer.ID) *target {
	t := &target{peer: id, deadFor: r.cfg.DeadFor, now: r.now}
	t.inst.Store(&in)
	return t
}

// Pick chooses an instance of service for one request, starting one when
// none is within reach. It fails with ErrClosed once the router is closed.
func (r *Router) Pick(ctx context.Context, name string) (*Target, error) {
	s, err := r.service(ctx, name)
	if err != nil {
		return nil, err
	}
	s.touch(r.now())
	if s.clientMode() {
		return nil, fmt.Errorf("service %q %w: its proxy runs in client mode", name, ErrNotServing)
	}
	if t := s.choose(r); t != nil {
		return t, nil
	}
	// Nothing within the hard RTT: measure what we have not measured yet,
	// then, if still nothing, start an instance.
	r.measure(ctx, s)
	if t := s.choose(r); t != nil {
		return t, nil
	}
	if err := s.allocate(ctx, r, "no instance within the hard RTT"); err != nil {
		return nil, err
	}
	if t := s.choose(r); t != nil {
		return t, nil
	}
	return nil, fmt.Errorf("%w: %s: the new instance is not within reach", ErrAllocation, name)
}

// service returns the state of a service, setting it up on first use:
// its definition, a watch on its instances, and a first RTT measurement.
// Requests that arrive together during set-up wait for it, so none of
// them starts an instance that already exists.
func (r *Router) service(ctx context.Context, name string) (*service, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("look up %s: %w", name, ErrClosed)
	}
	s := r.services[name]
	if s == nil {
		s = newService(name, r.now())
		r.services[name] = s
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.setUp(s)
		}()
	}
	r.mu.Unlock()
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: look up %s: %w", ErrRegistry, name, ctx.Err())
	}
	if s.setupErr != nil {
		return nil, s.setupErr
	}
	return s, s.refreshInfo(r)
}

// setUp reads the definition, starts the watch and waits (briefly) for its
// snapshot, then keeps the service current until it is idle.
func (r *Router) setUp(s *service) {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	info, err := r.reg.GetService(ctx, s.name)
	if err != nil {
		cancel()
		if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrInvalid) {
			s.setupErr = fmt.Errorf("%w %q", ErrUnknownService, s.name)
		} else {
			s.setupErr = fmt.Errorf("%w: %w", ErrRegistry, err)
		}
		r.mu.Lock()
		delete(r.services, s.name) // the next request tries again
		r.mu.Unlock()
		close(s.ready)
		return
	}
	s.info, s.infoAt = info, r.now()
	s.watch = r.reg.WatchInstances(s.name)
	s.disc = r.dht.Discover(ServiceRendezvous(s.name))
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	_ = s.watch.Wait(wctx)
	wcancel()
	s.sync(r)
	r.measure(ctx, s)
	cancel()
	close(s.ready)
	s.loop(r)
}

// measure pings every known instance of s in parallel.
func (r *Router) measure(ctx context.Context, s *service) {
	ts := s.targets()
	peers := make([]peer.AddrInfo, len(ts))
	for i, t := range ts {
		peers[i].ID = t.peer
		for _, a := range t.inst.Load().Addrs {
			if m, err := ma.NewMultiaddr(a); err == nil {
				peers[i].Addrs = append(peers[i].Addrs, m)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r.probe.Measure(ctx, peers)
}

// rtt is the smoothed RTT to p, if measured.
func (r *Router) rtt(p peer.ID) (time.Duration, bool) { return r.probe.RTT(p) }

// Known reports whether service is set up (it exists in the registry and
// was asked for recently).
func (r *Router) Known(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.services[name] != nil
}

// ServiceRendezvous is the DHT namespace a service-mode proxy advertises
// its instance under. The registry's instance records (written by
// allocators) are the main source of instances; this one finds proxies run
// by hand, which no allocator knows of.
func ServiceRendezvous(service string) string { return "physarum/service/" + service }
