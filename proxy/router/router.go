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
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/registry"
)

// Errors Pick returns; the proxy maps them to HTTP statuses.
var (
	// ErrUnknownService: no such service in the registry (404).
	ErrUnknownService = errors.New("unknown service")
	// ErrAllocation: no instance within reach and none could be started
	// (503, with the reason).
	ErrAllocation = errors.New("no instance available")
	// ErrRegistry: the registry could not be asked (502).
	ErrRegistry = errors.New("registry unavailable")
	// ErrNotServing: the service runs its proxy in client mode: it calls
	// other services and answers none (404).
	ErrNotServing = errors.New("serves no requests")
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
	node   *p2p.Node
	reg    *registry.Client
	placer *deploy.Placer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	services map[string]*service
}

// New returns a Router measuring from n and reading the registry through
// reg.
func New(n *p2p.Node, reg *registry.Client, cfg Config) *Router {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Router{
		cfg: cfg, log: cfg.Logger, node: n, reg: reg, placer: deploy.NewPlacer(n, reg, cfg.Logger),
		ctx: ctx, cancel: cancel, services: map[string]*service{},
	}
}

// Close stops every watch and measurement loop.
func (r *Router) Close() {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.services {
		if s.watch != nil {
			s.watch.Close()
			s.disc.Close()
		}
	}
}

// Target is a chosen instance. Call Done when the request is over.
type Target struct {
	// Peer is the instance's proxy.
	Peer peer.ID
	// Instance is its registry record.
	Instance registry.Instance
	// RTT is the smoothed RTT to it.
	RTT time.Duration
	t   *target
}

// Done reports how the request went: a failed instance is taken out of
// rotation for Config.DeadFor.
func (t *Target) Done(failed bool) {
	t.t.inFlight.Add(-1)
	if failed {
		t.t.deadUntil.Store(time.Now().UnixNano() + int64(t.t.deadFor))
	}
}

// target is what the router knows of one instance.
type target struct {
	inst      atomic.Pointer[registry.Instance] // replaced whole as the registry updates it
	peer      peer.ID
	inFlight  atomic.Int64
	deadUntil atomic.Int64 // unix ns
	deadFor   time.Duration
}

func (t *target) dead(now time.Time) bool { return t.deadUntil.Load() > now.UnixNano() }

func newTarget(in registry.Instance, id peer.ID, deadFor time.Duration) *target {
	t := &target{peer: id, deadFor: deadFor}
	t.inst.Store(&in)
	return t
}

// Pick chooses an instance of service for one request, starting one when
// none is within reach.
func (r *Router) Pick(ctx context.Context, name string) (*Target, error) {
	s, err := r.service(ctx, name)
	if err != nil {
		return nil, err
	}
	s.touch()
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
	s := r.services[name]
	if s == nil {
		s = newService(name)
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
		return nil, fmt.Errorf("%w: look up %s: %v", ErrRegistry, name, ctx.Err())
	}
	if s.setupErr != nil {
		return nil, s.setupErr
	}
	return s, s.refreshInfo(ctx, r)
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
			s.setupErr = fmt.Errorf("%w: %v", ErrRegistry, err)
		}
		r.mu.Lock()
		delete(r.services, s.name) // the next request tries again
		r.mu.Unlock()
		close(s.ready)
		return
	}
	s.info, s.infoAt = info, time.Now()
	s.watch = r.reg.WatchInstances(s.name)
	s.disc = r.node.Discover(ServiceRendezvous(s.name))
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
	ids := make([]peer.ID, len(ts))
	for i, t := range ts {
		ids[i] = t.peer
		for _, a := range t.inst.Load().Addrs {
			if m, err := ma.NewMultiaddr(a); err == nil {
				r.node.Host().Peerstore().AddAddr(t.peer, m, peerstore.RecentlyConnectedAddrTTL)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r.node.RTT().Measure(ctx, ids)
}

// rtt is the smoothed RTT to p, if measured.
func (r *Router) rtt(p peer.ID) (time.Duration, bool) {
	s, ok := r.node.RTT().Get(p)
	return s.Smoothed, ok
}

// random is the source of the two choices; tests seed it.
var random = rand.N[int]

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
