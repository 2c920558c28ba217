package httpapi

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// fakeNodes is a Controller that lists nodes too, in the store's order
// (by peer ID), not by name.
type fakeNodes struct {
	*fakeControl
	nodes []registry.Node
	err   error
	asked []string // the callers
}

func (f *fakeNodes) ListNodes(ctx context.Context) ([]registry.Node, error) {
	f.asked = append(f.asked, registry.CallerOf(ctx))
	return f.nodes, f.err
}

var _ NodeLister = (*fakeNodes)(nil)

func twoNodes() []registry.Node {
	cpu := 12.0
	return []registry.Node{
		{PeerID: "12D3KooWA", Name: "site-b", CPU: 4000, Memory: 4096, FreeCPU: 3900, FreeMemory: 4000, Instances: 1,
			Runtimes: []string{registry.RuntimeProcess},
			Load:     []registry.InstanceLoad{{ID: "hello-1", Service: "hello", RPS: 2.5, InFlight: 1, CPU: &cpu}},
			RTTs:     []registry.PeerRTT{{PeerID: "12D3KooWB", RTT: 40.2}}},
		{PeerID: "12D3KooWB", Name: "site-a", CPU: 2000, Memory: 2048, FreeCPU: 2000, FreeMemory: 2048,
			Runtimes: []string{registry.RuntimeDocker}, Images: []string{"sha256:abc"},
			RTTs: []registry.PeerRTT{{PeerID: "12D3KooWA", RTT: 39.8}}},
	}
}

// TestNodesRoute: GET /nodes answers the node records, every published
// field (Load, Images, RTTs) included, sorted by name; it is a read.
func TestNodesRoute(t *testing.T) {
	f := &fakeNodes{fakeControl: newFake(), nodes: twoNodes()}
	h := New(f, Options{})
	w := send(t, h, "GET", "/nodes", "")
	body := w.Body.String()
	var got []registry.Node
	answer(t, w, http.StatusOK, &got)
	if len(got) != 2 || got[0].Name != "site-a" || got[1].Name != "site-b" {
		t.Fatalf("GET /nodes answered %+v, want site-a then site-b", got)
	}
	if got[1].Load[0].RPS != 2.5 || *got[1].Load[0].CPU != 12 || got[0].Images[0] != "sha256:abc" ||
		got[0].RTTs[0] != (registry.PeerRTT{PeerID: "12D3KooWA", RTT: 39.8}) || got[1].FreeCPU != 3900 {
		t.Fatalf("GET /nodes answered %+v", got)
	}
	for _, want := range []string{`"RTTs":[{"PeerID":"12D3KooWA","RTT":39.8}]`, `"Images":["sha256:abc"]`, `"Load":[{"ID":"hello-1"`} {
		if !strings.Contains(body, want) {
			t.Errorf("answer %s lacks %s", body, want)
		}
	}
	answer(t, send(t, h, "GET", "/nodes/", ""), http.StatusOK, nil)
	if w := send(t, h, "HEAD", "/nodes", ""); w.Code != http.StatusOK {
		t.Errorf("HEAD /nodes: %d", w.Code)
	}
	refusal(t, send(t, h, "POST", "/nodes", `{}`), http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	refusal(t, send(t, h, "GET", "/nodes?name=site-a", ""), http.StatusBadRequest, wire.CodeBadRequest)
	refusal(t, send(t, h, "GET", "/nodes/site-a", ""), http.StatusNotFound, wire.CodeNotFound)
	if len(f.asked) != 3 || f.asked[0] != "http 127.0.0.1" {
		t.Errorf("the Controller was asked by %q, want 3 reads by http 127.0.0.1 (refusals never reach it)", f.asked)
	}

	// No node: [], not null.
	f.nodes = nil
	w = send(t, h, "GET", "/nodes", "")
	if answer(t, w, http.StatusOK, nil); w.Body.String() != "[]\n" {
		t.Errorf("no node: %q, want []", w.Body)
	}
	// The registry's failure is the API's.
	f.err = wire.Errorf(wire.CodeUnavailable, "list nodes: etcd unreachable")
	refusal(t, send(t, h, "GET", "/nodes", ""), http.StatusServiceUnavailable, wire.CodeUnavailable)
	f.err = nil

	// A read: the token when reads need one, none with PublicRead.
	tok := New(f, Options{Token: "s3cret"})
	refusal(t, send(t, tok, "GET", "/nodes", ""), http.StatusUnauthorized, CodeUnauthorized)
	answer(t, send(t, tok, "GET", "/nodes", "", "Authorization", "Bearer s3cret"), http.StatusOK, nil)
	public := New(f, Options{Token: "s3cret", PublicRead: true})
	answer(t, send(t, public, "GET", "/nodes", ""), http.StatusOK, nil)
	refusal(t, send(t, public, "POST", "/nodes", `{}`), http.StatusMethodNotAllowed, CodeMethodNotAllowed)

	// An allocator's connector passes the read through; a Controller
	// that cannot list nodes does not serve the route.
	answer(t, send(t, New(f, Options{NodeScope: "site-a"}), "GET", "/nodes", ""), http.StatusOK, nil)
	refusal(t, send(t, New(newFake(), Options{}), "GET", "/nodes", ""), http.StatusNotFound, wire.CodeNotFound)
}
