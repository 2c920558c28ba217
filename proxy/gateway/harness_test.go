package gateway_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/physarum-p2p/physarum/common/netdelay"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/proxy/forward"
	"github.com/physarum-p2p/physarum/proxy/gateway"
	"github.com/physarum-p2p/physarum/proxy/router"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry/registrytest"
)

// net is a test network: a registry, a client proxy (router + gateway
// behind an httptest server), and instances added by hand. An instance is
// a real service proxy (forward.Server on its own libp2p node, possibly
// delayed) in front of an httptest service, published in the registry as
// an allocator would.
type testNet struct {
	t      *testing.T
	reg    *registrytest.Registry
	client *p2ptest.Node
	rc     *registry.Client
	router *router.Router
	url    string // the client proxy's base URL
	// publisher writes instance records as the "node" they run on.
	pub   *p2ptest.Node
	pubRC *registry.Client
	// metrics is the client proxy's metrics registry.
	metrics *prometheus.Registry
}

func newNet(t *testing.T, rcfg router.Config) *testNet {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-node test; skipped with -short")
	}
	nodes := p2ptest.Network(t, 3, nil)
	n := &testNet{t: t, reg: registrytest.Start(t, nodes[0]), client: nodes[1], pub: nodes[2]}
	n.rc = registrytest.Client(t, n.client)
	n.pubRC = registrytest.Client(t, n.pub)
	if _, err := n.pubRC.PutNode(t.Context(), registry.Node{PeerID: n.pub.ID().String()}, 60); err != nil {
		t.Fatal(err)
	}
	rcfg.Logger = p2ptest.Logger(t)
	n.router = router.New(n.client.Node, n.rc, rcfg)
	t.Cleanup(n.router.Close)
	n.metrics = prometheus.NewRegistry()
	gw := gateway.New(n.router, forward.NewTransport(n.client.Host(), forward.TransportOptions{}),
		gateway.Config{Logger: p2ptest.Logger(t), Registerer: n.metrics})
	t.Cleanup(gw.Close)
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	n.url = srv.URL
	return n
}

// service registers name with the given RTT requirements (ms). The Exec
// command is never run: instances here are started by the test.
func (n *testNet) service(name string, soft, hard float64) {
	n.t.Helper()
	info := registry.ServiceInfo{Exec: &registry.ExecConf{Command: "/nonexistent"},
		NetworkSoftReq: registry.PerfInd{RTT: soft}, NetworkHardReq: registry.PerfInd{RTT: hard}}
	if _, err := n.rc.AddService(n.t.Context(), name, info); err != nil {
		n.t.Fatal(err)
	}
}

// instance is a running test instance.
type instance struct {
	node   *p2ptest.Node
	delay  *netdelay.Delay
	served atomic.Int64
	rec    registry.Instance
}

// instance starts an instance of service named id, delay away, answering
// "<id>" to every request, and publishes its record.
func (n *testNet) instance(service, id string, delay time.Duration) *instance {
	t := n.t
	t.Helper()
	in := &instance{delay: netdelay.New(delay)}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.served.Add(1)
		fmt.Fprint(w, id)
	}))
	t.Cleanup(upstream.Close)
	in.node = p2ptest.Start(t, p2ptest.Spec{Bootstraps: []peer.AddrInfo{n.reg.Node.AddrInfo()}, Delay: in.delay})
	srv, err := forward.Serve(in.node.Host(), upstream.Listener.Addr().String(), forward.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	var addrs []string
	for _, a := range in.node.Addrs() {
		addrs = append(addrs, a.String())
	}
	in.rec = registry.Instance{ID: id, Service: service, Node: n.pub.ID().String(), State: registry.StateRunning,
		Runtime: registry.RuntimeProcess, PeerID: in.node.ID().String(), Addrs: addrs, Started: time.Now()}
	if err := n.pubRC.PutInstance(t.Context(), in.rec); err != nil {
		t.Fatal(err)
	}
	return in
}

// get sends GET /<service>/ through the client proxy.
func (n *testNet) get(service string) (int, string, error) {
	resp, err := http.Get(n.url + "/" + service + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b := make([]byte, 4096)
	k, _ := resp.Body.Read(b)
	return resp.StatusCode, string(b[:k]), nil
}

// counter reads a metric of the client proxy (0 when absent).
func (n *testNet) counter(name string, labels ...string) float64 {
	mfs, err := n.metrics.Gather()
	if err != nil {
		n.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				match = match && found
			}
			if match {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}
