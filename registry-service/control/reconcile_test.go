package control_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/cluster"
	"github.com/physarum-p2p/physarum/registry-service/cluster/clustertest"
	"github.com/physarum-p2p/physarum/registry-service/control"
	"github.com/physarum-p2p/physarum/registry-service/server"
)

// The reconciler's decisions, on a real embedded etcd and the registry's
// real store. The allocators are the one thing simulated (nodes that admit
// while they have room and write the instance record as an allocator
// does): the end-to-end tests in demos/e2e run real ones.

var etcd = clustertest.New("control-test")

func TestMain(m *testing.M) {
	code := m.Run()
	etcd.Close()
	os.Exit(code)
}

// member returns the test etcd, emptied of every registry key.
func member(t *testing.T) *cluster.Member {
	t.Helper()
	return etcd.Empty(t)
}

// fakeNodes admit instances while they have room, and publish records as
// allocators do.
type fakeNodes struct {
	t     *testing.T
	store *server.Store
	fail  error // every deploy fails with it, when set
	// failVersion, when set, makes instances of that version fail at
	// start (their record says failed).
	failVersion int
	// now is the clock of the instances' start times.
	now func() time.Time

	mu      sync.Mutex
	deploys int
	stops   []string
}

func (f *fakeNodes) Deploy(ctx context.Context, n registry.Node, r deploy.Request) (*registry.Instance, error) {
	// One admission at a time, as an allocator reserves.
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deploys++
	if f.fail != nil {
		return nil, f.fail
	}
	insts, _, err := f.store.ListInstances(ctx, "")
	if err != nil {
		return nil, err
	}
	used := 0
	for _, in := range insts {
		if in.Node == n.PeerID {
			used += 100
		}
	}
	if used+100 > n.CPU {
		return nil, wire.Errorf(wire.CodeNoCapacity, "node %s is full", n.Name)
	}
	// As an allocator does: the instance runs the version asked for (the
	// service's current definition by default), and carries it.
	info, err := f.store.GetService(ctx, r.Service)
	if err != nil {
		return nil, err
	}
	if r.Version != 0 {
		if r.Version > info.Version {
			return nil, wire.Errorf(wire.CodeNotFound, "no version %d of %s", r.Version, r.Service)
		}
		info.Version = r.Version
	}
	state := registry.StateRunning
	if f.failVersion != 0 && info.Version == f.failVersion {
		state = registry.StateFailed
	}
	in := registry.Instance{ID: r.ID, Service: r.Service, Node: n.PeerID, State: state, Version: info.Version,
		Runtime: registry.RuntimeProcess, Compute: r.Compute, Started: f.now()}
	return &in, f.store.PutInstance(ctx, in)
}

func (f *fakeNodes) Stop(ctx context.Context, n registry.Node, id string) error {
	insts, _, err := f.store.ListInstances(ctx, "")
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.stops = append(f.stops, id)
	f.mu.Unlock()
	for _, in := range insts {
		if in.ID == id {
			return f.store.DeleteInstance(ctx, in.Service, id)
		}
	}
	return wire.Errorf(wire.CodeNotFound, "no instance %s", id)
}

type noConnector struct{}

func (noConnector) Scale(context.Context, string, string, int) error {
	return fmt.Errorf("no connector")
}
func (noConnector) Status(context.Context, string, string) (int, error) {
	return 0, fmt.Errorf("no connector")
}

type rig struct {
	store *server.Store
	ctl   *control.Control
	rec   *control.Reconciler
	nodes *fakeNodes
	now   time.Time
}

// newRig registers service "svc" (100 millicores) and nodes n1 and n2
// (site=a, room for 3 each) and n3 (site=b).
func newRig(t *testing.T) *rig {
	t.Helper()
	m := member(t)
	st := server.NewStore(m.KV())
	r := &rig{store: st, now: time.Now()}
	r.ctl = control.New(m.KV(), st, control.Config{})
	r.nodes = &fakeNodes{t: t, store: st, now: func() time.Time { return r.now.UTC() }}
	r.rec = control.NewReconcilerWith(r.ctl, m.Client(), r.nodes, noConnector{}, control.ReconcilerConfig{
		Name: "test", Now: func() time.Time { return r.now },
	})
	ctx := t.Context()
	if _, err := st.AddService(ctx, "svc", registry.ServiceVersion{Info: registry.ServiceInfo{CpuReq: 100, MemoryReq: 10, Exec: &registry.ExecConf{Command: "x"}}}); err != nil {
		t.Fatal(err)
	}
	for i, site := range []string{"a", "a", "b"} {
		n := registry.Node{PeerID: fmt.Sprintf("peer-%d", i+1), Name: fmt.Sprintf("n%d", i+1), Runtimes: []string{registry.RuntimeProcess},
			Labels: map[string]string{"site": site}, CPU: 300, Memory: 1000, FreeCPU: 300, FreeMemory: 1000}
		if _, err := st.PutNode(ctx, n, 30); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// pass runs one pass and waits for what it launched.
func (r *rig) pass(t *testing.T) int {
	t.Helper()
	n, err := r.rec.Pass(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r.rec.Settle()
	return n
}

func (r *rig) pinned(t *testing.T) []registry.Instance {
	t.Helper()
	insts, _, err := r.store.ListInstances(t.Context(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	var out []registry.Instance
	for _, in := range insts {
		if in.Compute != "" {
			out = append(out, in)
		}
	}
	return out
}

func TestPassConvergesThenChangesNothing(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if _, err := r.ctl.PutCompute(ctx, registry.Compute{Name: "site-a", Connector: "physarum:labels?site=a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.Scale(ctx, "svc", "site-a", 5); err != nil {
		t.Fatal(err)
	}
	if n := r.pass(t); n != 5 {
		t.Fatalf("first pass: %d actions, want 5 starts", n)
	}
	got := r.pinned(t)
	perNode := map[string]int{}
	for _, in := range got {
		perNode[in.Node]++
	}
	if len(got) != 5 || perNode["peer-3"] != 0 || perNode["peer-1"] > 3 || perNode["peer-2"] > 3 {
		t.Fatalf("after the first pass: %d instances, by node %v; want 5 on site=a's two nodes", len(got), perNode)
	}
	rev := revision(t)
	if n := r.pass(t); n != 0 {
		t.Errorf("second pass: %d actions, want none", n)
	}
	if after := revision(t); after != rev {
		t.Errorf("second pass wrote to etcd (revision %d -> %d)", rev, after)
	}
	// Above what the compute holds: 6 fit, the 7th is refused by every
	// node and waits, said so in status.
	if _, err := r.ctl.Scale(ctx, "svc", "site-a", 7); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	r.pass(t) // the next pass (the start's end triggers one) stores why
	if got := len(r.pinned(t)); got != 6 {
		t.Errorf("desired 7 on a compute with room for 6: %d running", got)
	}
	st, err := r.ctl.Status(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	if cs := st.Computes["site-a"]; cs.Running != 6 || cs.Desired != 7 || (cs.Message == "" && cs.LastFailure == "") {
		t.Errorf("status of site-a: %+v; want 6 of 7 and why", cs)
	}
}

func TestSurplusGoesNewestFirstAndOnDemandStays(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	t0 := time.Now().UTC()
	for i, id := range []string{"svc-old", "svc-mid", "svc-new"} {
		in := registry.Instance{ID: id, Service: "svc", Node: "peer-1", State: registry.StateRunning, Compute: "physarum", Started: t0.Add(time.Duration(i) * time.Minute)}
		if err := r.store.PutInstance(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	od := registry.Instance{ID: "svc-od", Service: "svc", Node: "peer-2", State: registry.StateRunning, OnDemand: true, Started: t0.Add(time.Hour)}
	if err := r.store.PutInstance(ctx, od); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.Scale(ctx, "svc", "", 1); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	sort.Strings(r.nodes.stops)
	if !slices.Equal(r.nodes.stops, []string{"svc-mid", "svc-new"}) {
		t.Errorf("stopped %v; want the two newest pinned ones", r.nodes.stops)
	}
	if n := r.pass(t); n != 0 {
		t.Errorf("pass after the surplus went: %d actions", n)
	}
	// Scale to 0 and delete the service: the pinned instance goes, the
	// on-demand one stays, and nothing of the service's desired state
	// remains.
	if _, err := r.ctl.DeleteService(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	if got := r.pinned(t); len(got) != 0 {
		t.Errorf("pinned instances after the service was deleted: %v", got)
	}
	r.pass(t)
	resp, err := etcd.Member(t).Client().Get(ctx, "/physarum/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if strings.HasPrefix(k, control.PrefixDesired) || strings.HasPrefix(k, control.PrefixReconcile) {
			t.Errorf("left after the service was deleted: %s", k)
		}
	}
	if insts, _, _ := r.store.ListInstances(ctx, "svc"); len(insts) != 1 || insts[0].ID != "svc-od" {
		t.Errorf("instances left: %v; want the on-demand one alone", insts)
	}
}

func TestFailingStartsBackOffAndSayWhy(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.nodes.fail = wire.Errorf(wire.CodeRuntimeError, "exited with status 3")
	if _, err := r.ctl.Scale(ctx, "svc", "", 1); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	if r.nodes.deploys != 1 {
		t.Fatalf("first pass: %d deploys, want 1 (a runtime error is the service's: no other node is asked)", r.nodes.deploys)
	}
	r.pass(t) // one failure may be bad luck: tried again at once
	if r.nodes.deploys != 2 {
		t.Fatalf("after one failure: %d deploys, want 2", r.nodes.deploys)
	}
	for range 5 {
		r.pass(t) // within the backoff that the second failure set: nothing
	}
	if r.nodes.deploys != 2 {
		t.Errorf("%d deploys within the backoff, want 2", r.nodes.deploys)
	}
	st, err := r.ctl.Status(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	cs := st.Computes[registry.ComputePhysarum]
	if cs.LastFailure == "" || !cs.BackoffUntil.After(r.now) || cs.Message == "" {
		t.Errorf("status while backing off: %+v", cs)
	}
	if d := r.rec.NextWake(r.now); d <= 0 || d > cs.BackoffUntil.Sub(r.now)+time.Millisecond {
		t.Errorf("the reconciler wakes in %s; the backoff ends in %s", d, cs.BackoffUntil.Sub(r.now))
	}
	first := cs.BackoffUntil.Sub(r.now)
	r.now = cs.BackoffUntil.Add(time.Millisecond)
	r.pass(t)
	if r.nodes.deploys != 3 {
		t.Fatalf("after the backoff: %d deploys, want 3", r.nodes.deploys)
	}
	r.pass(t)
	st, _ = r.ctl.Status(ctx, "svc")
	if second := st.Computes[registry.ComputePhysarum].BackoffUntil.Sub(r.now); second < 2*first-time.Second {
		t.Errorf("backoff did not grow: %s then %s", first, second)
	}
}

func TestLostInstancesAreReplacedWithinTheCompute(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if _, err := r.ctl.PutCompute(ctx, registry.Compute{Name: "site-a", Connector: "physarum:labels?site=a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.Scale(ctx, "svc", "site-a", 2); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	// Node n1 dies: its lease goes, and its instance records with it.
	if err := r.store.DeleteNode(ctx, "peer-1"); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	got := r.pinned(t)
	if len(got) != 2 {
		t.Fatalf("%d instances after n1 died, want 2", len(got))
	}
	for _, in := range got {
		if in.Node != "peer-2" {
			t.Errorf("replacement on %s; site-a has only n2 left", in.Node)
		}
	}
}

func revision(t *testing.T) int64 {
	t.Helper()
	resp, err := etcd.Member(t).Client().Get(t.Context(), "/physarum/none")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}
