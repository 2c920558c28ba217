package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/allocator/placement"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/rtt"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// These tests drive the Placer's decisions (whom to ask, in which order,
// when to move on, when to stop) against in-test fakes of the registry,
// the RTT measurer and the allocators: no network, no clock.

// testNode is an allocator record with plenty of room for the test
// service, so that only RTT (and spreading, where a test says so) orders
// the nodes.
func testNode(id peer.ID) registry.Node {
	return registry.Node{
		PeerID: id.String(), Addrs: []string{"/ip4/127.0.0.1/tcp/4001"},
		Runtimes: []string{registry.RuntimeProcess},
		CPU:      4000, FreeCPU: 4000, Memory: 4096, FreeMemory: 4096,
	}
}

// testService is a process-runtime service preferring nodes within soft
// ms and refusing those beyond hard ms (0: no limit).
func testService(soft, hard float64) registry.ServiceInfo {
	return registry.ServiceInfo{
		Exec:           &registry.ExecConf{Command: "/bin/svc"},
		NetworkSoftReq: registry.PerfInd{RTT: soft}, NetworkHardReq: registry.PerfInd{RTT: hard},
		CpuReq: 100, MemoryReq: 64,
	}
}

type fakeRegistry struct {
	info  registry.ServiceInfo
	nodes []registry.Node
	insts []registry.Instance
	// errors returned by each method, when set.
	getErr, nodesErr, instsErr error
	gets                       int
}

func (f *fakeRegistry) GetService(_ context.Context, name string) (registry.ServiceInfo, error) {
	f.gets++
	return f.info, f.getErr
}

func (f *fakeRegistry) ListNodes(context.Context) ([]registry.Node, error) {
	return f.nodes, f.nodesErr
}

func (f *fakeRegistry) ListInstances(_ context.Context, service string) ([]registry.Instance, error) {
	var out []registry.Instance
	for _, in := range f.insts {
		if in.Service == service {
			out = append(out, in)
		}
	}
	return out, f.instsErr
}

// fakeRTT answers Measure with fixed RTTs; a peer it has none for does
// not answer. before, when set, runs first (to check what the Placer did
// before measuring).
type fakeRTT struct {
	rtts   map[peer.ID]time.Duration
	before func(peers []peer.ID)
}

func (f *fakeRTT) Measure(_ context.Context, peers []peer.ID) []rtt.Result {
	if f.before != nil {
		f.before(peers)
	}
	out := make([]rtt.Result, len(peers))
	for i, p := range peers {
		out[i].Peer = p
		if d, ok := f.rtts[p]; ok {
			out[i].RTT = d
		} else {
			out[i].Err = rtt.ErrNoAnswer
		}
	}
	return out
}

type fakeAddrs map[peer.ID][]ma.Multiaddr

func (f fakeAddrs) AddAddr(p peer.ID, a ma.Multiaddr, _ time.Duration) { f[p] = append(f[p], a) }

// fakeAsker plays the allocators: each answers with its refusal, or with
// an instance when it has none.
type fakeAsker struct {
	refuse map[peer.ID]error
	// onAsk, when set, runs as each allocator is asked.
	onAsk    func(p peer.ID)
	asked    []peer.ID
	onDemand []bool
	versions []int
}

func (f *fakeAsker) Send(_ context.Context, p peer.ID, r Request) (*Response, error) {
	service := r.Service
	f.asked = append(f.asked, p)
	f.onDemand = append(f.onDemand, r.OnDemand)
	f.versions = append(f.versions, r.Version)
	if f.onAsk != nil {
		f.onAsk(p)
	}
	if err := f.refuse[p]; err != nil {
		return nil, err
	}
	return &Response{Instance: &registry.Instance{ID: "inst-1", Service: service, Node: p.String()}}, nil
}

// world is one placement's surroundings: this node, the registry, the
// RTTs measured from here and the allocators.
type world struct {
	self  peer.ID
	reg   *fakeRegistry
	rtt   *fakeRTT
	addrs fakeAddrs
	ask   *fakeAsker
}

func newWorld(t *testing.T, info registry.ServiceInfo) *world {
	t.Helper()
	return &world{
		self:  p2ptest.ID(t, 0),
		reg:   &fakeRegistry{info: info},
		rtt:   &fakeRTT{rtts: map[peer.ID]time.Duration{}},
		addrs: fakeAddrs{},
		ask:   &fakeAsker{refuse: map[peer.ID]error{}},
	}
}

// node adds allocator i, at d from here (d < 0: it does not answer pings).
func (w *world) node(t *testing.T, i int, d time.Duration) peer.ID {
	t.Helper()
	id := p2ptest.ID(t, i)
	w.reg.nodes = append(w.reg.nodes, testNode(id))
	if d >= 0 {
		w.rtt.rtts[id] = d
	}
	return id
}

func (w *world) placer(t *testing.T) *Placer {
	t.Helper()
	return newPlacer(w.self, w.reg, w.addrs, w.rtt, w.ask, slog.New(slog.NewTextHandler(t.Output(), nil)))
}

func (w *world) place(t *testing.T, opts PlaceOptions) (*Response, error) {
	t.Helper()
	return w.placer(t).Place(t.Context(), "svc", nil, opts)
}

func noCapacity(msg string) error { return wire.Errorf(wire.CodeNoCapacity, "%s", msg) }

func shortIDs(ids []peer.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = p2p.ShortID(id)
	}
	return out
}

func wantAsked(t *testing.T, got []peer.ID, want ...peer.ID) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("asked %v, want %v", shortIDs(got), shortIDs(want))
	}
}

func TestPlaceAsksTheNearestNodeFirst(t *testing.T) {
	w := newWorld(t, testService(50, 0))
	w.node(t, 1, 30*time.Millisecond)
	near := w.node(t, 2, 10*time.Millisecond)
	w.node(t, 3, 20*time.Millisecond)
	resp, err := w.place(t, PlaceOptions{OnDemand: true})
	if err != nil {
		t.Fatal(err)
	}
	wantAsked(t, w.ask.asked, near)
	if resp.Instance.Node != near.String() {
		t.Fatalf("answer from %s, want the instance the nearest node started", resp.Instance.Node)
	}
	if !w.ask.onDemand[0] {
		t.Fatal("OnDemand was not passed on to the allocator")
	}
}

func TestPlaceMovesOnAfterARefusal(t *testing.T) {
	for _, refusal := range []error{
		wire.Errorf(wire.CodeNoCapacity, "100 millicores free, 200 asked"),
		wire.Errorf(wire.CodeUnsupported, "no docker here"),
		wire.Errorf(wire.CodeRuntimeError, "exec: no such file"),
		wire.Errorf(wire.CodeUnavailable, "allocator closing"),
		errors.New("stream reset"), // no code: the allocator could not be reached
	} {
		t.Run(refusal.Error(), func(t *testing.T) {
			w := newWorld(t, testService(50, 0))
			first := w.node(t, 1, 10*time.Millisecond)
			second := w.node(t, 2, 20*time.Millisecond)
			w.ask.refuse[first] = refusal
			resp, err := w.place(t, PlaceOptions{})
			if err != nil {
				t.Fatalf("after %v from the nearest node: %v", refusal, err)
			}
			wantAsked(t, w.ask.asked, first, second)
			if resp.Instance.Node != second.String() {
				t.Fatalf("answer from %s, want %s", resp.Instance.Node, second)
			}
		})
	}
}

func TestPlaceStopsWhenTheServiceIsTheProblem(t *testing.T) {
	for _, refusal := range []*wire.Error{
		wire.Errorf(wire.CodeNotFound, "no service named \"svc\""),
		wire.Errorf(wire.CodeBadRequest, "service name"),
	} {
		t.Run(refusal.Code, func(t *testing.T) {
			w := newWorld(t, testService(50, 0))
			first := w.node(t, 1, 10*time.Millisecond)
			w.node(t, 2, 20*time.Millisecond)
			w.ask.refuse[first] = refusal
			_, err := w.place(t, PlaceOptions{})
			if wire.CodeOf(err) != refusal.Code || errors.Is(err, ErrRefused) {
				t.Fatalf("got %v, want the allocator's %s as is", err, refusal.Code)
			}
			wantAsked(t, w.ask.asked, first)
		})
	}
}

func TestPlaceStopsWhenTheContextEnds(t *testing.T) {
	w := newWorld(t, testService(50, 0))
	first := w.node(t, 1, 10*time.Millisecond)
	w.node(t, 2, 20*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w.ask.refuse[first] = context.Canceled
	w.ask.onAsk = func(peer.ID) { cancel() } // the requester gives up while the first is asked
	_, err := w.placer(t).Place(ctx, "svc", nil, PlaceOptions{})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want the cancelled ask's error", err)
	}
	wantAsked(t, w.ask.asked, first)
}

func TestPlaceRefusedGathersEveryRefusalInOrder(t *testing.T) {
	w := newWorld(t, testService(50, 0))
	c := w.node(t, 1, 30*time.Millisecond)
	a := w.node(t, 2, 10*time.Millisecond)
	b := w.node(t, 3, 20*time.Millisecond)
	w.ask.refuse[a] = noCapacity("cpu on a")
	w.ask.refuse[b] = wire.Errorf(wire.CodeRuntimeError, "crashed on b")
	w.ask.refuse[c] = noCapacity("memory on c")
	_, err := w.place(t, PlaceOptions{})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want ErrRefused", err)
	}
	wantAsked(t, w.ask.asked, a, b, c)
	want := fmt.Sprintf("%s: no_capacity: cpu on a; %s: runtime_error: crashed on b; %s: no_capacity: memory on c",
		p2p.ShortID(a), p2p.ShortID(b), p2p.ShortID(c))
	if !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("error %q\nshould end with every refusal in the order asked: %q", err, want)
	}
}

func TestPlaceSoftOnlyAsksOnlyNodesWithinTheSoftRTT(t *testing.T) {
	w := newWorld(t, testService(15, 0))
	near := w.node(t, 1, 10*time.Millisecond)
	far := w.node(t, 2, 20*time.Millisecond)
	w.ask.refuse[near] = noCapacity("full")

	_, err := w.place(t, PlaceOptions{SoftOnly: true})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("SoftOnly, the only near node refusing: %v, want ErrRefused", err)
	}
	wantAsked(t, w.ask.asked, near)

	// Without SoftOnly the node beyond the soft RTT is next in line.
	w.ask.asked = nil
	if _, err := w.place(t, PlaceOptions{}); err != nil {
		t.Fatal(err)
	}
	wantAsked(t, w.ask.asked, near, far)
}

func TestPlaceSoftOnlyWithNoNodeWithinTheSoftRTT(t *testing.T) {
	w := newWorld(t, testService(15, 0))
	far := w.node(t, 1, 20*time.Millisecond)
	w.node(t, 2, -1) // unmeasured: not within any soft RTT

	_, err := w.place(t, PlaceOptions{SoftOnly: true})
	if !errors.Is(err, ErrNoNearerNode) {
		t.Fatalf("got %v, want ErrNoNearerNode", err)
	}
	wantAsked(t, w.ask.asked)

	// Without SoftOnly, a node beyond the soft RTT is better than none.
	if _, err := w.place(t, PlaceOptions{}); err != nil {
		t.Fatal(err)
	}
	wantAsked(t, w.ask.asked, far)
}

func TestPlaceNeverAsksNodesBeyondTheHardRTT(t *testing.T) {
	w := newWorld(t, testService(0, 5))
	inside := w.node(t, 1, 3*time.Millisecond)
	w.node(t, 2, 8*time.Millisecond) // measured in ms, 8 > 5
	w.node(t, 3, -1)                 // did not answer: its RTT is unknown
	w.ask.refuse[inside] = noCapacity("full")
	_, err := w.place(t, PlaceOptions{})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want ErrRefused", err)
	}
	wantAsked(t, w.ask.asked, inside)
}

func TestPlaceCountsThisNodeAtZeroRTT(t *testing.T) {
	w := newWorld(t, testService(0, 5))
	other := w.node(t, 1, time.Millisecond)
	w.reg.nodes = append(w.reg.nodes, testNode(w.self)) // an allocator on this very node; pinging itself fails
	w.ask.refuse[w.self] = noCapacity("full")
	if _, err := w.place(t, PlaceOptions{}); err != nil {
		t.Fatal(err)
	}
	wantAsked(t, w.ask.asked, w.self, other)
}

func TestPlaceSpreadsInstancesOfTheService(t *testing.T) {
	w := newWorld(t, testService(50, 0))
	busy := w.node(t, 1, time.Millisecond)
	idle := w.node(t, 2, 5*time.Millisecond)
	w.reg.insts = []registry.Instance{
		{ID: "a", Service: "svc", Node: busy.String()},
		{ID: "b", Service: "other", Node: idle.String()}, // another service's: does not count
	}
	if _, err := w.place(t, PlaceOptions{}); err != nil {
		t.Fatal(err)
	}
	wantAsked(t, w.ask.asked, idle)
}

func TestPlaceLearnsAddressesBeforeMeasuring(t *testing.T) {
	w := newWorld(t, testService(50, 0))
	a := w.node(t, 1, time.Millisecond)
	b := w.node(t, 2, 2*time.Millisecond)
	w.rtt.before = func([]peer.ID) {
		for _, id := range []peer.ID{a, b} {
			if len(w.addrs[id]) != 1 || w.addrs[id][0].String() != "/ip4/127.0.0.1/tcp/4001" {
				t.Errorf("measuring %s before knowing its address from its node record: %v", p2p.ShortID(id), w.addrs[id])
			}
		}
	}
	if _, err := w.place(t, PlaceOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestPlaceNeverAsksANodeWithABadPeerID(t *testing.T) {
	w := newWorld(t, testService(50, 0))
	good := w.node(t, 1, time.Millisecond)
	w.reg.nodes = append(w.reg.nodes, registry.Node{
		PeerID: "not-a-peer-id", Runtimes: []string{registry.RuntimeProcess},
		CPU: 4000, FreeCPU: 4000, Memory: 4096, FreeMemory: 4096,
	})
	w.ask.refuse[good] = noCapacity("full")
	_, err := w.place(t, PlaceOptions{})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want ErrRefused", err)
	}
	wantAsked(t, w.ask.asked, good)
}

func TestPlaceReadsTheServiceOnlyWhenNotGiven(t *testing.T) {
	w := newWorld(t, testService(0, 5))
	near := w.node(t, 1, 3*time.Millisecond)
	far := w.node(t, 2, 8*time.Millisecond)

	w.ask.refuse[near] = noCapacity("full")

	// Not given: the registry's definition (hard RTT 5 ms) applies.
	if _, err := w.place(t, PlaceOptions{}); !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want ErrRefused", err)
	}
	if w.reg.gets != 1 {
		t.Fatalf("read the service %d times, want once", w.reg.gets)
	}
	wantAsked(t, w.ask.asked, near)

	// Given: the caller's definition (no hard RTT) applies, unread, and
	// its version is the one asked for (a blue-green rollout's old set).
	w.reg.getErr = errors.New("registry should not be asked")
	w.ask.asked, w.ask.versions = nil, nil
	info := testService(0, 0)
	info.Version = 7
	if _, err := w.placer(t).Place(t.Context(), "svc", &info, PlaceOptions{}); err != nil {
		t.Fatal(err)
	}
	wantAsked(t, w.ask.asked, near, far)
	if !slices.Equal(w.ask.versions, []int{7, 7}) {
		t.Fatalf("asked for versions %v, want 7 each time", w.ask.versions)
	}
}

func TestPlaceReportsWhyNoNodeFits(t *testing.T) {
	w := newWorld(t, testService(0, 5))
	w.node(t, 1, 8*time.Millisecond)
	_, err := w.place(t, PlaceOptions{})
	if !errors.Is(err, placement.ErrNoCandidate) {
		t.Fatalf("got %v, want placement.ErrNoCandidate", err)
	}
	wantAsked(t, w.ask.asked)
}

func TestPlaceEndsOnARegistryFailure(t *testing.T) {
	down := wire.Errorf(wire.CodeUnavailable, "no registry")
	for name, fail := range map[string]func(*fakeRegistry){
		"get":            func(r *fakeRegistry) { r.getErr = down },
		"list nodes":     func(r *fakeRegistry) { r.nodesErr = down },
		"list instances": func(r *fakeRegistry) { r.instsErr = down },
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, testService(50, 0))
			w.node(t, 1, time.Millisecond)
			fail(w.reg)
			_, err := w.place(t, PlaceOptions{})
			if !errors.Is(err, down) {
				t.Fatalf("got %v, want the registry's error", err)
			}
			wantAsked(t, w.ask.asked)
		})
	}
}
