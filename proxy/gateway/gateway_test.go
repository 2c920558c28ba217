package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/allocator/runtime/process"
	"github.com/physarum-p2p/physarum/allocator/runtimetest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/proxy/forward"
	"github.com/physarum-p2p/physarum/proxy/router"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry/registrytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(p2ptest.IgnoreLeaks(),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))...)
}

type jsonError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func getJSONError(t *testing.T, url string) (int, jsonError, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e jsonError
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	return resp.StatusCode, e, time.Since(start)
}

func TestUnknownServiceIs404(t *testing.T) {
	n := newNet(t, router.Config{})
	code, e, took := getJSONError(t, n.url+"/nope/x")
	if code != http.StatusNotFound || e.Code != "not_found" || !strings.Contains(e.Message, "nope") {
		t.Fatalf("%d %+v", code, e)
	}
	if took > 5*time.Second {
		t.Fatalf("404 took %s", took)
	}
	code, _, _ = getJSONError(t, n.url+"/")
	if code != http.StatusNotFound {
		t.Fatalf("no service in the path: %d", code)
	}
}

func TestNoInstanceAndNoNodeForItIs503WithTheReason(t *testing.T) {
	n := newNet(t, router.Config{AllocTimeout: 3 * time.Second})
	n.service("lonely", 0, 0)
	code, e, took := getJSONError(t, n.url+"/lonely/")
	if code != http.StatusServiceUnavailable || !strings.Contains(e.Message, "no node can run service lonely") {
		t.Fatalf("%d %+v", code, e)
	}
	if took > 5*time.Second {
		t.Fatalf("503 took %s with a 3s allocation timeout", took)
	}
	t.Logf("503 after %s: %s", took, e.Message)
}

func TestTrafficGoesToTheInstanceWithinTheHardRTT(t *testing.T) {
	n := newNet(t, router.Config{})
	n.service("svc", 10, 20)
	near := n.instance("svc", "near", 5*time.Millisecond)
	far := n.instance("svc", "far", 40*time.Millisecond)
	for i := range 50 {
		code, body, err := n.get("svc")
		if err != nil || code != 200 || body != "near" {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
	}
	if far.served.Load() != 0 || near.served.Load() != 50 {
		t.Fatalf("near served %d, far %d", near.served.Load(), far.served.Load())
	}
}

func TestLoadIsSpreadBetweenInstancesWithinTheSoftRTT(t *testing.T) {
	n := newNet(t, router.Config{})
	// Both are on loopback: well within 50 ms however busy the machine.
	n.service("svc", 50, 100)
	a := n.instance("svc", "a", 0)
	b := n.instance("svc", "b", 0)
	var wg sync.WaitGroup
	var failed atomic.Int64
	work := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if code, _, err := n.get("svc"); err != nil || code != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	for range 1000 {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	sa, sb := a.served.Load(), b.served.Load()
	if failed.Load() != 0 || sa+sb != 1000 {
		t.Fatalf("%d failed; a %d + b %d", failed.Load(), sa, sb)
	}
	if sa > 700 || sb > 700 {
		t.Fatalf("unbalanced: a served %d, b %d of 1000", sa, sb)
	}
	t.Logf("a %d, b %d", sa, sb)
}

// allocWorld adds a real allocator (process runtime) to a test network.
func (n *testNet) allocator(delay time.Duration) *agent.Agent {
	t := n.t
	t.Helper()
	proxyBin := proctest.Build(t, "./proxy", "./allocator/runtimetest/testtask")
	node := p2ptest.Start(t, p2ptest.Spec{Bootstraps: []peer.AddrInfo{n.reg.Node.AddrInfo()}})
	if err := node.Bootstrapped(t.Context()); err != nil {
		t.Fatal(err)
	}
	rt, err := process.New(process.Options{Dir: filepath.Join(t.TempDir(), "instances")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	a, err := agent.New(t.Context(), node.Node, registrytest.Client(t, node), []runtime.Runtime{rt}, agent.Config{
		CPU: 4000, Memory: 4096, ProxyPath: proxyBin, LeaseTTL: 3 * time.Second, Logger: p2ptest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// realService registers a service the allocator can run: the test task
// answering "hello from <name>".
func (n *testNet) realService(name string, soft, hard float64) {
	n.t.Helper()
	task := proctest.Build(n.t, "./allocator/runtimetest/testtask")
	info := registry.ServiceInfo{
		Exec: &registry.ExecConf{Command: task, Env: map[string]string{
			runtimetest.EnvTask: runtimetest.ModeHTTP, runtimetest.EnvReply: "hello from " + name}},
		NetworkSoftReq: registry.PerfInd{RTT: soft}, NetworkHardReq: registry.PerfInd{RTT: hard}, CpuReq: 10, MemoryReq: 8,
	}
	if _, err := n.rc.AddService(n.t.Context(), name, info); err != nil {
		n.t.Fatal(err)
	}
}

func TestFiftyFirstRequestsShareOneAllocation(t *testing.T) {
	var allocations atomic.Int64
	n := newNet(t, router.Config{OnAllocate: func(string, string) { allocations.Add(1) }})
	a := n.allocator(0)
	n.realService("cold", 0, 0)
	waitNodes(t, n, 2)
	var wg sync.WaitGroup
	var ok atomic.Int64
	start := time.Now()
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := n.get("cold")
			if err == nil && code == 200 && body == "hello from cold" {
				ok.Add(1)
			} else {
				t.Errorf("%d %q %v", code, body, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("50 concurrent first requests answered in %s", time.Since(start))
	if ok.Load() != 50 {
		t.Fatalf("%d of 50 answered", ok.Load())
	}
	if allocations.Load() != 1 || len(a.Instances()) != 1 {
		t.Fatalf("%d allocations asked for, %d instances started; want 1 and 1", allocations.Load(), len(a.Instances()))
	}
}

func TestRisingDelayMovesTrafficToANewNearInstance(t *testing.T) {
	n := newNet(t, router.Config{MeasureEvery: 100 * time.Millisecond})
	n.allocator(0)
	n.realService("svc", 10, 20)
	near := n.instance("svc", "near", 5*time.Millisecond)
	n.instance("svc", "far", 40*time.Millisecond)
	waitNodes(t, n, 2)
	if _, body, _ := n.get("svc"); body != "near" {
		t.Fatalf("first answer from %q, want near", body)
	}
	// Steady load from 4 clients; record every failure and who answered.
	var failed atomic.Int64
	var movedAt atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := n.get("svc")
				switch {
				case err != nil || code != 200:
					failed.Add(1)
					t.Errorf("failed request: %d %q %v", code, body, err)
				case strings.HasPrefix(body, "hello from"):
					movedAt.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		}()
	}
	raised := time.Now()
	near.delay.Set(60 * time.Millisecond) // now beyond the hard RTT
	eventually.Succeeds(t, 10*time.Second, func() error {
		if movedAt.Load() == 0 {
			return fmt.Errorf("still served by the old instances")
		}
		return nil
	})
	close(stop)
	wg.Wait()
	took := time.Duration(movedAt.Load() - raised.UnixNano())
	t.Logf("traffic moved to a new instance %s after the delay rose", took)
	if took > 2*time.Second {
		t.Fatalf("traffic moved after %s, want within 2s", took)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during the move", failed.Load())
	}
}

func waitNodes(t *testing.T, n *testNet, want int) {
	t.Helper()
	eventually.Succeeds(t, 10*time.Second, func() error {
		nodes, err := n.rc.ListNodes(t.Context())
		if err != nil {
			return err
		}
		if len(nodes) != want {
			return fmt.Errorf("%d nodes", len(nodes))
		}
		return nil
	})
}

func TestBetweenSoftAndHardServesNowThenSwitchesToANearerInstance(t *testing.T) {
	n := newNet(t, router.Config{UpgradeAfter: 500 * time.Millisecond})
	n.allocator(0)
	n.realService("svc", 10, 50)
	n.instance("svc", "middling", 30*time.Millisecond)
	waitNodes(t, n, 2)
	start := time.Now()
	var switched time.Duration
	for switched == 0 {
		code, body, err := n.get("svc")
		if err != nil || code != 200 {
			t.Fatalf("request failed: %d %q %v", code, body, err)
		}
		if strings.HasPrefix(body, "hello from") {
			switched = time.Since(start)
		} else if body != "middling" {
			t.Fatalf("answered by %q", body)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatal("never switched to a nearer instance")
		}
	}
	t.Logf("served by the 30 ms instance at once, switched to a nearer one after %s", switched)
}

func TestKillingOneOfTwoInstancesUnderLoadFailsNoIdempotentRequest(t *testing.T) {
	n := newNet(t, router.Config{})
	n.service("svc", 10, 20)
	a := n.instance("svc", "a", 0)
	b := n.instance("svc", "b", 0)
	var failed, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				if code, body, err := n.get("svc"); err != nil || code != 200 {
					failed.Add(1)
					t.Errorf("failed request: %d %q %v", code, body, err)
				}
			}
		}()
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		if a.served.Load() < 50 || b.served.Load() < 50 {
			return fmt.Errorf("a %d, b %d", a.served.Load(), b.served.Load())
		}
		return nil
	})
	if err := a.node.Close(); err != nil { // the instance dies mid-load
		t.Fatal(err)
	}
	killedAt := a.served.Load()
	before := b.served.Load()
	eventually.Succeeds(t, 10*time.Second, func() error {
		if b.served.Load() < before+200 {
			return fmt.Errorf("b served %d since", b.served.Load()-before)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), total.Load())
	}
	// Requests already inside a's service when it died may still finish
	// there (at most one per client); nothing new reaches it.
	if more := a.served.Load() - killedAt; more > 4 {
		t.Fatalf("the dead instance served %d more", more)
	}
	// Out of rotation at its first failure: only the requests in flight
	// then (4 clients) were retried, not one per request since.
	if retries := n.counter("physarum_proxy_retries_total"); retries > 8 {
		t.Fatalf("%v retries: the dead instance kept being chosen", retries)
	}
	t.Logf("%d requests, none failed; the survivor took %d after the kill", total.Load(), b.served.Load()-before)
}

func TestAProxyRunByHandInServiceModeIsFoundOnTheDHT(t *testing.T) {
	n := newNet(t, router.Config{})
	n.service("manual", 0, 0)
	// A service proxy nobody registered: it only advertises itself.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "served by hand")
	}))
	defer upstream.Close()
	node := p2ptest.Start(t, p2ptest.Spec{Bootstraps: []peer.AddrInfo{n.reg.Node.AddrInfo()}})
	srv, err := forward.Serve(node.Host(), upstream.Listener.Addr().String(), forward.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	node.Advertise(router.ServiceRendezvous("manual"))
	eventually.Succeeds(t, 15*time.Second, func() error {
		code, body, err := n.get("manual")
		if err != nil || code != 200 || body != "served by hand" {
			return fmt.Errorf("%d %q %w", code, body, err)
		}
		return nil
	})
}

func TestAClientModeServiceIsNotRoutedTo(t *testing.T) {
	n := newNet(t, router.Config{AllocTimeout: 2 * time.Second})
	info := registry.ServiceInfo{Exec: &registry.ExecConf{Command: "/bin/x"}, ProxyClientMode: true}
	if _, err := n.rc.AddService(t.Context(), "caller", info); err != nil {
		t.Fatal(err)
	}
	code, e, took := getJSONError(t, n.url+"/caller/")
	if code != http.StatusNotFound || !strings.Contains(e.Message, "client mode") {
		t.Fatalf("%d %+v", code, e)
	}
	if took > 2*time.Second {
		t.Fatalf("took %s: it must not try to start an instance", took)
	}
}
