package router

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/registry"
)

// The fakes a Router works with in these tests. Every test runs inside a
// synctest bubble: the router's goroutines (set-up, the per-service loop,
// allocations) run for real, and synctest.Wait tells when they are idle.
// The router's decisions read the hand-moved clock, never the bubble's.

// id is a fixed peer ID named name: IDs sort as their names do (for names
// of the same length).
func id(name string) peer.ID {
	mh, err := multihash.Sum([]byte(name), multihash.IDENTITY, -1)
	if err != nil {
		panic(err)
	}
	return peer.ID(mh)
}

// running is a running instance record of service on peer id(name).
func running(service, name string) registry.Instance {
	return registry.Instance{ID: name, Service: service, State: registry.StateRunning, PeerID: id(name).String()}
}

// clock is moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// draws returns the values given in turn (each taken modulo n), over and
// over: the router's "random" draws.
func draws(vs ...int) func(n int) int {
	var mu sync.Mutex
	k := 0
	return func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		v := vs[k%len(vs)]
		k++
		return v % n
	}
}

// fakeRegistry holds service definitions and one watch per service.
type fakeRegistry struct {
	mu      sync.Mutex
	infos   map[string]registry.ServiceInfo
	err     error // GetService fails with it when set
	hang    bool  // GetService answers nothing until its context ends
	watches map[string]*fakeWatch
	gets    int // GetService calls
	started int // WatchInstances calls
}

func (f *fakeRegistry) GetService(ctx context.Context, service string) (registry.ServiceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.hang {
		f.mu.Unlock()
		<-ctx.Done()
		f.mu.Lock()
		return registry.ServiceInfo{}, ctx.Err()
	}
	if f.err != nil {
		return registry.ServiceInfo{}, f.err
	}
	info, ok := f.infos[service]
	if !ok {
		return registry.ServiceInfo{}, fmt.Errorf("get service %s: %w", service, registry.ErrNotFound)
	}
	return info, nil
}

func (f *fakeRegistry) WatchInstances(service string) InstanceWatch {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started++
	return f.watch(service)
}

// fail makes GetService fail with err (nil: answer again).
func (f *fakeRegistry) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// calls returns how many times GetService and WatchInstances were called.
func (f *fakeRegistry) calls() (gets, watches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets, f.started
}

// watch returns service's watch, made on first use. f.mu is held.
func (f *fakeRegistry) watch(service string) *fakeWatch {
	w := f.watches[service]
	if w == nil {
		w = &fakeWatch{changed: make(chan struct{})}
		f.watches[service] = w
	}
	return w
}

// fakeWatch is an InstanceWatch whose records the test sets.
type fakeWatch struct {
	mu      sync.Mutex
	insts   []registry.Instance
	route   registry.Route
	changed chan struct{}
	closed  int
}

// setRoute sets the service's route, as a route event does.
func (w *fakeWatch) setRoute(rt registry.Route) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.route = rt
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *fakeWatch) Route() registry.Route {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.route
}

func (w *fakeWatch) set(insts ...registry.Instance) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.insts = insts
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *fakeWatch) Instances() []registry.Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]registry.Instance(nil), w.insts...)
}

func (w *fakeWatch) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

func (w *fakeWatch) Wait(ctx context.Context) error { return nil }

func (w *fakeWatch) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed++
}

func (w *fakeWatch) closes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// fakeNet is the Prober: an instance's RTT is known once a Measure has
// included it, and only if the test gave it a distance (an instance
// without one never answers).
type fakeNet struct {
	mu       sync.Mutex
	dist     map[peer.ID]time.Duration
	measured map[peer.ID]time.Duration
}

func (f *fakeNet) place(name string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dist[id(name)] = d
}

// move puts instance name at distance d and measures it there at once.
func (f *fakeNet) move(name string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dist[id(name)] = d
	f.measured[id(name)] = d
}

func (f *fakeNet) Measure(ctx context.Context, peers []peer.AddrInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range peers {
		if d, ok := f.dist[p.ID]; ok {
			f.measured[p.ID] = d
		}
	}
}

func (f *fakeNet) RTT(p peer.ID) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.measured[p]
	return d, ok
}

// noDHT finds nobody.
type noDHT struct{}

func (noDHT) Discover(string) PeerSet { return noPeers{} }

type noPeers struct{}

func (noPeers) Peers() []p2p.Peer { return nil }
func (noPeers) Close()            {}

// fakePlacer records what it was asked and answers with place.
type fakePlacer struct {
	mu       sync.Mutex
	asked    []deploy.PlaceOptions
	versions []int // of the definitions asked for
	place    func(ctx context.Context, opts deploy.PlaceOptions) (*deploy.Response, error)
}

func (f *fakePlacer) Place(ctx context.Context, service string, info *registry.ServiceInfo, opts deploy.PlaceOptions) (*deploy.Response, error) {
	f.mu.Lock()
	f.asked = append(f.asked, opts)
	f.versions = append(f.versions, info.Version)
	place := f.place
	f.mu.Unlock()
	if place == nil {
		return nil, fmt.Errorf("no node can run service %s", service)
	}
	return place(ctx, opts)
}

func (f *fakePlacer) calls() []deploy.PlaceOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]deploy.PlaceOptions(nil), f.asked...)
}

// startsAt makes the placer start instance name of service at distance d.
func (f *fakePlacer) startsAt(net *fakeNet, service, name string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.place = func(ctx context.Context, opts deploy.PlaceOptions) (*deploy.Response, error) {
		net.place(name, d)
		in := running(service, name)
		return &deploy.Response{Instance: &in}, nil
	}
}

// testRouter is a Router on fakes, with one service, svc.
type testRouter struct {
	*Router
	t       *testing.T
	freg    *fakeRegistry
	fnet    *fakeNet
	fplacer *fakePlacer
	clock   *clock
}

const svc = "svc"

// newTestRouter returns a Router on fakes, closed at the end of the test
// (call it inside a synctest bubble). svc is defined by info and runs the
// instances named in dist, each at its distance.
func newTestRouter(t *testing.T, cfg Config, info registry.ServiceInfo, dist map[string]time.Duration) *testRouter {
	t.Helper()
	tr := &testRouter{
		t:       t,
		freg:    &fakeRegistry{infos: map[string]registry.ServiceInfo{svc: info}, watches: map[string]*fakeWatch{}},
		fnet:    &fakeNet{dist: map[peer.ID]time.Duration{}, measured: map[peer.ID]time.Duration{}},
		fplacer: &fakePlacer{},
		clock:   &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	var insts []registry.Instance
	for name, d := range dist {
		tr.fnet.place(name, d)
		insts = append(insts, running(svc, name))
	}
	tr.watch().set(insts...)
	tr.Router = NewFrom(Deps{Registry: tr.freg, Placer: tr.fplacer, Prober: tr.fnet, Discoverer: noDHT{}}, cfg)
	tr.now = tr.clock.now
	tr.rand = draws(0)
	t.Cleanup(tr.Close)
	return tr
}

// publish makes the registry's records of svc the running instances
// named.
func (tr *testRouter) publish(names ...string) {
	var insts []registry.Instance
	for _, n := range names {
		insts = append(insts, running(svc, n))
	}
	tr.watch().set(insts...)
}

// watch is svc's watch.
func (tr *testRouter) watch() *fakeWatch {
	tr.freg.mu.Lock()
	defer tr.freg.mu.Unlock()
	return tr.freg.watch(svc)
}

// rtts is a service definition with soft and hard RTTs (0: none).
func rtts(soft, hard time.Duration) registry.ServiceInfo {
	return registry.ServiceInfo{
		NetworkSoftReq: registry.PerfInd{RTT: float64(soft.Milliseconds())},
		NetworkHardReq: registry.PerfInd{RTT: float64(hard.Milliseconds())},
	}
}

// pick picks an instance of svc and returns its name.
func (tr *testRouter) pick() (string, *Target) {
	tr.t.Helper()
	tg, err := tr.Pick(tr.t.Context(), svc)
	if err != nil {
		tr.t.Fatalf("pick: %v", err)
	}
	return tg.Instance.ID, tg
}

// hold makes n picks, keeping every request in flight, and counts them
// per instance.
func (tr *testRouter) hold(n int) map[string]int {
	tr.t.Helper()
	got := map[string]int{}
	for range n {
		name, _ := tr.pick()
		got[name]++
	}
	return got
}
