package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/allocator/runtime/docker"
	"github.com/physarum-p2p/physarum/allocator/runtime/process"
	"github.com/physarum-p2p/physarum/allocator/runtimetest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/proxy/forward"
	"github.com/physarum-p2p/physarum/registry"
)

var (
	_ agent.CPUMeter = (*process.Runtime)(nil)
	_ agent.CPUMeter = (*docker.Runtime)(nil)
)

// TestNodeRecordCarriesTheLoadOfItsInstances: an instance serving
// requests through its proxy shows in its node's record, in the registry,
// with a request rate and a CPU figure (the process runtime measures it).
func TestNodeRecordCarriesTheLoadOfItsInstances(t *testing.T) {
	w := newWorld(t)
	_, node := w.allocator(allocOpts{})
	w.service("busy", 100, 0, nil)
	resp, err := w.deploy(node, "busy", false)
	if err != nil {
		t.Fatal(err)
	}
	got := busyLoad(t, w, node.ID().String(), *resp.Instance)
	if got.Service != "busy" {
		t.Errorf("load %+v", got)
	}
}

// TestDockerNodeRecordCarriesTheLoadOfItsInstances: the same with a
// container, whose CPU figure the Docker runtime gives.
func TestDockerNodeRecordCarriesTheLoadOfItsInstances(t *testing.T) {
	w := newDockerWorld(t)
	n := w.node()
	w.dockerAllocator(n, agent.Config{})
	w.dockerService("busy-docker", map[string]string{runtimetest.EnvTask: runtimetest.ModeHTTP, runtimetest.EnvReply: "hello"})
	resp, err := w.deploy(n, "busy-docker", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := busyLoad(t, w.world, n.ID().String(), *resp.Instance); got.Service != "busy-docker" {
		t.Errorf("load %+v", got)
	}
}

// busyLoad sends requests to inst until the record of its node shows it
// serving them, with a CPU figure, and returns that load.
func busyLoad(t *testing.T, w *world, node string, inst registry.Instance) registry.InstanceLoad {
	t.Helper()
	get := w.getter(inst)
	var got registry.InstanceLoad
	eventually.Succeeds(t, 30*time.Second, func() error {
		for range 20 {
			if err := get(); err != nil {
				return err
			}
		}
		l, ok := nodeLoad(t, w, node, inst.ID)
		if !ok || l.RPS <= 0 || l.CPU == nil || *l.CPU < 0 || l.InFlight < 0 {
			b, _ := json.Marshal(l)
			return fmt.Errorf("node record's load of %s: %s (found %v)", inst.ID, b, ok)
		}
		got = l
		return nil
	})
	t.Logf("published load: %.1f req/s, %d in flight, %.0f %% CPU", got.RPS, got.InFlight, *got.CPU)
	return got
}

// TestIdleNodeRecordHoldsStill: once an idle instance's figures have
// settled, heartbeats leave the node's record in the registry as it was
// (the registry only renews its lease), load included.
func TestIdleNodeRecordHoldsStill(t *testing.T) {
	const heartbeat = time.Second // a third of the world's 3 s lease
	w := newWorld(t)
	_, node := w.allocator(allocOpts{})
	w.service("quiet", 10, 0, nil)
	resp, err := w.deploy(node, "quiet", false)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Instance.ID
	eventually.Succeeds(t, 40*time.Second, func() error {
		rec, ok := nodeRecord(t, w, node.ID().String())
		l, found := loadOf(rec, id)
		if !ok || !found || l.RPS != 0 || l.InFlight != 0 || l.CPU == nil {
			b, _ := json.Marshal(rec.Load)
			return fmt.Errorf("no idle load for %s yet: %s", id, b)
		}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for start := time.Now(); time.Since(start) < 3*heartbeat+heartbeat/2; <-tick.C {
			now, _ := nodeRecord(t, w, node.ID().String())
			if !now.Updated.Equal(rec.Updated) {
				before, _ := json.Marshal(rec.Load)
				after, _ := json.Marshal(now.Load)
				return fmt.Errorf("record rewritten after %s: load %s, then %s", time.Since(start).Round(time.Millisecond), before, after)
			}
		}
		return nil
	})
}

// getter returns a function that sends GET / to inst through its proxy,
// over one Transport: its requests reuse one stream, where w.get opens a
// stream each (and leaves it open).
func (w *world) getter(inst registry.Instance) func() error {
	t := w.t
	t.Helper()
	id, err := peer.Decode(inst.PeerID)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range inst.Addrs {
		_ = w.client.Host().Connect(t.Context(), peerInfo(id, a))
	}
	tr := forward.NewTransport(w.client.Host(), forward.TransportOptions{})
	t.Cleanup(tr.CloseIdle)
	return func() error {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		resp, err := tr.RoundTrip(t.Context(), id, req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
}

// nodeRecord returns the registry's record of node.
func nodeRecord(t *testing.T, w *world, node string) (registry.Node, bool) {
	t.Helper()
	nodes, err := w.rc.ListNodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.PeerID == node {
			return n, true
		}
	}
	return registry.Node{}, false
}

func loadOf(n registry.Node, id string) (registry.InstanceLoad, bool) {
	for _, l := range n.Load {
		if l.ID == id {
			return l, true
		}
	}
	return registry.InstanceLoad{}, false
}

// nodeLoad returns the load the registry's record of node gives instance id.
func nodeLoad(t *testing.T, w *world, node, id string) (registry.InstanceLoad, bool) {
	t.Helper()
	n, _ := nodeRecord(t, w, node)
	return loadOf(n, id)
}
