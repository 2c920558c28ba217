package registry_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
	"github.com/physarum-p2p/physarum/registry/registrytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(p2ptest.IgnoreLeaks(),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"))...)
}

func svc(cpu int) registry.ServiceInfo {
	return registry.ServiceInfo{Exec: &registry.ExecConf{Command: "/bin/x"}, CpuReq: cpu, NetworkHardReq: registry.PerfInd{RTT: 20}}
}

func TestClientOperations(t *testing.T) {
	nodes := p2ptest.Network(t, 2, nil)
	registrytest.Start(t, nodes[0])
	c := registrytest.Client(t, nodes[1])
	ctx := t.Context()
	if msg, err := c.AddService(ctx, "hello", svc(100)); err != nil || msg != "added service hello, version 1" {
		t.Fatalf("add: %q %v", msg, err)
	}
	if msg, _ := c.AddService(ctx, "hello", svc(200)); msg != "updated service hello, version 2" {
		t.Fatalf("second add: %q", msg)
	}
	if msg, _ := c.AddService(ctx, "hello", svc(200)); msg != "service hello unchanged, version 2" {
		t.Fatalf("the same definition again: %q", msg)
	}
	info, err := c.GetService(ctx, "hello")
	if err != nil || info.CpuReq != 200 || info.Version != 2 {
		t.Fatalf("get: %+v %v", info, err)
	}
	h, err := c.History(ctx, "hello")
	if err != nil || len(h) != 2 || h[0].Version != 2 || h[0].Info.CpuReq != 200 || h[1].Version != 1 || h[1].Info.CpuReq != 100 ||
		h[0].SetBy != "peer "+nodes[1].ID().String() || h[0].SetAt.IsZero() {
		t.Fatalf("history: %+v %v; want versions 2 and 1, set by the client", h, err)
	}
	if _, err := c.History(ctx, "nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("history of an unknown service: %v", err)
	}
	if _, err := c.History(ctx, "Bad Name"); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("history, client-side validation: %v", err)
	}
	if _, err := c.GetService(ctx, "nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	all, err := c.ListServices(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("list: %v %v", all, err)
	}
	if _, err := c.AddService(ctx, "Bad Name", svc(1)); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("client-side validation: %v", err)
	}
	if _, err := c.DeleteService(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteService(ctx, "hello"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestNodeAndInstanceRecordsLiveUnderTheNodeLease(t *testing.T) {
	nodes := p2ptest.Network(t, 3, nil)
	registrytest.Start(t, nodes[0])
	alloc := registrytest.Client(t, nodes[1])
	other := registrytest.Client(t, nodes[2])
	ctx := t.Context()
	me := nodes[1].ID().String()
	inst := registry.Instance{ID: "i-1", Service: "hello", Node: me, State: registry.StateRunning}
	if err := alloc.PutInstance(ctx, inst); err == nil {
		t.Fatal("instance accepted before its node had a record")
	}
	rec := registry.Node{PeerID: me, CPU: 1000, FreeCPU: 1000, Images: []string{"sha256:abc"},
		Load: []registry.InstanceLoad{{ID: "i-1", Service: "hello", RPS: 1.5}},
		RTTs: []registry.PeerRTT{{PeerID: nodes[2].ID().String(), RTT: 12.5}}}
	if _, err := alloc.PutNode(ctx, rec, 2); err != nil {
		t.Fatal(err)
	}
	if err := alloc.PutInstance(ctx, inst); err != nil {
		t.Fatal(err)
	}
	// Nobody can write another node's records.
	if _, err := other.PutNode(ctx, registry.Node{PeerID: me}, 2); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("foreign node record: %v", err)
	}
	if err := other.PutInstance(ctx, inst); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("foreign instance record: %v", err)
	}
	ns, err := other.ListNodes(ctx)
	if err != nil || len(ns) != 1 || ns[0].PeerID != me || len(ns[0].RTTs) != 1 || ns[0].RTTs[0].RTT != 12.5 ||
		len(ns[0].Load) != 1 || len(ns[0].Images) != 1 {
		t.Fatalf("nodes: %+v %v", ns, err)
	}
	// Brief: who and where, without the measures.
	ns, err = other.ListNodesBrief(ctx)
	if err != nil || len(ns) != 1 || ns[0].PeerID != me || ns[0].CPU != 1000 || ns[0].RTTs != nil || ns[0].Load != nil || ns[0].Images != nil {
		t.Fatalf("brief nodes: %+v %v", ns, err)
	}
	// Without heartbeats, the lease (2s TTL) takes node and instance away.
	eventually.Succeeds(t, 10*time.Second, func() error {
		ns, err := other.ListNodes(ctx)
		if err != nil {
			return err
		}
		is, err := other.ListInstances(ctx, "")
		if err != nil {
			return err
		}
		if len(ns)+len(is) > 0 {
			return fmt.Errorf("%d nodes, %d instances left", len(ns), len(is))
		}
		return nil
	})
}

func TestWatchSeesInstancesComeAndGo(t *testing.T) {
	nodes := p2ptest.Network(t, 3, nil)
	registrytest.Start(t, nodes[0])
	alloc := registrytest.Client(t, nodes[1])
	proxy := registrytest.Client(t, nodes[2])
	ctx := t.Context()
	me := nodes[1].ID().String()
	if _, err := alloc.PutNode(ctx, registry.Node{PeerID: me}, 30); err != nil {
		t.Fatal(err)
	}
	w := proxy.WatchInstances("hello")
	defer w.Close()
	if err := w.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	changed := w.Changed()
	start := time.Now()
	if err := alloc.PutInstance(ctx, registry.Instance{ID: "i-1", Service: "hello", Node: me, State: registry.StateRunning}); err != nil {
		t.Fatal(err)
	}
	if err := alloc.PutInstance(ctx, registry.Instance{ID: "o-1", Service: "other", Node: me}); err != nil {
		t.Fatal(err)
	}
	<-changed
	t.Logf("new instance seen %s after the write began", time.Since(start))
	eventually.Succeeds(t, 5*time.Second, func() error {
		if got := w.Instances(); len(got) != 1 || got[0].ID != "i-1" {
			return fmt.Errorf("instances %v", got)
		}
		return nil
	})
	if err := alloc.DeleteInstance(ctx, "hello", "i-1"); err != nil {
		t.Fatal(err)
	}
	eventually.Succeeds(t, 5*time.Second, func() error {
		if got := w.Instances(); len(got) != 0 {
			return fmt.Errorf("instances %v", got)
		}
		return nil
	})
}

func TestClientFailsOverToAnotherRegistry(t *testing.T) {
	// Two registry servers on one etcd: stopping one server leaves the data
	// reachable through the other.
	nodes := p2ptest.Network(t, 3, nil)
	first := registrytest.Start(t, nodes[0])
	second := registrytest.Serve(t, nodes[1], first.Member)
	c := registrytest.Client(t, nodes[2])
	ctx := t.Context()
	eventually.Succeeds(t, 10*time.Second, func() error {
		if n := len(registry.Candidates(c)); n < 2 {
			return fmt.Errorf("%d registries known", n)
		}
		return nil
	})
	if _, err := c.AddService(ctx, "hello", svc(1)); err != nil {
		t.Fatal(err)
	}
	// Close whichever the client prefers; the next call must still succeed.
	if registry.Candidates(c)[0] == nodes[0].ID() {
		first.Server.Close()
	} else {
		second.Close()
	}
	if _, err := c.GetService(ctx, "hello"); err != nil {
		t.Fatalf("after the nearest registry stopped serving: %v", err)
	}
}

func TestWatchCarriesTheServicesRoute(t *testing.T) {
	nodes := p2ptest.Network(t, 2, nil)
	reg := registrytest.Start(t, nodes[0])
	proxy := registrytest.Client(t, nodes[1])
	ctx := t.Context()
	kv := reg.Member.Client()
	put := func(ro registry.Rollout) {
		t.Helper()
		b, err := json.Marshal(ro)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, control.PrefixRollouts+ro.Service, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	ro := registry.Rollout{
		Service: "hello", Strategy: registry.Strategy{Type: registry.StrategyBlueGreen}, From: 1, To: 2,
		Previous: svc(100), State: registry.RolloutRunning,
	}
	put(ro)
	w := proxy.WatchInstances("hello")
	defer w.Close()
	if err := w.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// In the snapshot: before the switch, the old set and its definition.
	if rt := w.Route(); rt.Version != 2 || rt.Switched || rt.Start == nil || rt.Start.Version != 1 || rt.Start.CpuReq != 100 {
		t.Fatalf("route from the snapshot %+v", rt)
	}
	// Another service's route is not this watch's.
	put(registry.Rollout{Service: "other", Strategy: ro.Strategy, From: 4, To: 5, State: registry.RolloutRunning, Switched: time.Now()})
	ro.Switched = time.Now()
	put(ro)
	eventually.Succeeds(t, 5*time.Second, func() error {
		if rt := w.Route(); !rt.Switched || rt.Version != 2 || rt.Start != nil {
			return fmt.Errorf("route %+v, want switched to version 2", rt)
		}
		return nil
	})
	// A rolling rollout has no route; nor has a service whose record went.
	ro.Strategy.Type = registry.StrategyRolling
	put(ro)
	eventually.Succeeds(t, 5*time.Second, func() error {
		if rt := w.Route(); rt.Version != 0 || !rt.Serves(1) {
			return fmt.Errorf("route %+v, want none", rt)
		}
		return nil
	})
	if _, err := kv.Delete(ctx, control.PrefixRollouts+"other"); err != nil {
		t.Fatal(err)
	}
	all := proxy.WatchInstances("")
	defer all.Close()
	if err := all.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if rt := all.RouteOf("other"); rt.Version != 0 {
		t.Fatalf("route of a deleted rollout record %+v", rt)
	}
}
