package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/allocator/runtime/process"
	"github.com/physarum-p2p/physarum/allocator/runtimetest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/netdelay"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/proxy/forward"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry/registrytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(p2ptest.IgnoreLeaks(),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"))...)
}

// world is a network with a registry, a client node, and allocators added
// on demand: real libp2p, real etcd, real processes.
type world struct {
	t      *testing.T
	reg    *registrytest.Registry
	client *p2ptest.Node
	rc     *registry.Client
	proxy  string // proxy binary
	task   string // stand-in workload binary
}

func newWorld(t *testing.T) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real instances; skipped with -short")
	}
	proxy := proctest.Build(t, "./proxy", "./allocator/runtimetest/testtask")
	task := proctest.Build(t, "./allocator/runtimetest/testtask")
	nodes := p2ptest.Network(t, 2, nil)
	w := &world{t: t, reg: registrytest.Start(t, nodes[0]), client: nodes[1], proxy: proxy, task: task}
	w.rc = registrytest.Client(t, nodes[1])
	return w
}

type allocOpts struct {
	cfg   agent.Config
	delay time.Duration
}

// allocator starts an agent with the process runtime on a node of its own.
func (w *world) allocator(o allocOpts) (*agent.Agent, *p2ptest.Node) {
	t := w.t
	t.Helper()
	n := w.node(o.delay)
	a, _, err := w.startAgent(n, filepath.Join(t.TempDir(), "instances"), o.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, n
}

// node starts a libp2p node joined to the world's registry.
func (w *world) node(delay time.Duration) *p2ptest.Node {
	t := w.t
	t.Helper()
	n := p2ptest.Start(t, p2ptest.Spec{Bootstraps: []peer.AddrInfo{w.reg.Node.AddrInfo()}, Delay: netdelay.New(delay)})
	if err := n.Bootstrapped(t.Context()); err != nil {
		t.Fatal(err)
	}
	return n
}

// startAgent starts an agent on node n with a process runtime whose
// instances live in dir (a dir used before: the agent adopts what runs
// there). Both are closed when the test ends; the runtime, closed
// earlier, lets another agent take dir over.
func (w *world) startAgent(n *p2ptest.Node, dir string, cfg agent.Config) (*agent.Agent, runtime.Runtime, error) {
	t := w.t
	t.Helper()
	rt, err := process.New(process.Options{Dir: dir, Logger: p2ptest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	if cfg.CPU == 0 {
		cfg.CPU, cfg.Memory = 4000, 4096
	}
	cfg.ProxyPath = w.proxy
	cfg.LeaseTTL = 3 * time.Second
	if cfg.StatusEvery == 0 {
		cfg.StatusEvery = 100 * time.Millisecond
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 20 * time.Second
	}
	cfg.Logger = p2ptest.Logger(t)
	c := registrytest.Client(t, n)
	a, err := agent.New(t.Context(), n.Node, c, []runtime.Runtime{rt}, cfg)
	if err != nil {
		_ = rt.Close()
		return nil, nil, err
	}
	t.Cleanup(a.Close)
	return a, rt, nil
}

// service registers a service running the test task in the given mode.
func (w *world) service(name string, cpu int, hardRTT float64, env map[string]string) {
	w.t.Helper()
	e := map[string]string{runtimetest.EnvTask: runtimetest.ModeHTTP, runtimetest.EnvPort: "${SERVICE_PORT}",
		runtimetest.EnvReply: "hello from " + name}
	for k, v := range env {
		e[k] = v
	}
	info := registry.ServiceInfo{
		Exec: &registry.ExecConf{Command: w.task, Env: e}, CpuReq: cpu, MemoryReq: 16,
		NetworkHardReq: registry.PerfInd{RTT: hardRTT},
	}
	if _, err := w.rc.AddService(w.t.Context(), name, info); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) deploy(on *p2ptest.Node, service string, onDemand bool) (*deploy.Response, error) {
	return w.send(on, deploy.Request{Op: deploy.OpDeploy, Service: service, OnDemand: onDemand})
}

// send sends a deploy request of any shape to the allocator on node on.
func (w *world) send(on *p2ptest.Node, r deploy.Request) (*deploy.Response, error) {
	ctx, cancel := context.WithTimeout(w.t.Context(), 30*time.Second)
	defer cancel()
	if err := w.client.Host().Connect(ctx, on.AddrInfo()); err != nil {
		return nil, err
	}
	return deploy.Send(ctx, w.client.Host(), on.ID(), r)
}

// get sends GET / to an instance through its proxy, over libp2p.
func (w *world) get(inst registry.Instance) (string, error) { return w.getPath(inst, "/") }

// getPath sends GET path to an instance through its proxy, over libp2p.
func (w *world) getPath(inst registry.Instance, path string) (string, error) {
	id, err := peer.Decode(inst.PeerID)
	if err != nil {
		return "", err
	}
	tr := forward.NewTransport(w.client.Host(), forward.TransportOptions{})
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	for _, a := range inst.Addrs {
		_ = w.client.Host().Connect(w.t.Context(), peerInfo(id, a))
	}
	resp, err := tr.RoundTrip(w.t.Context(), id, req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func (w *world) record(id string) (registry.Instance, bool) {
	insts, err := w.rc.ListInstances(w.t.Context(), "")
	if err != nil {
		w.t.Fatal(err)
	}
	for _, in := range insts {
		if in.ID == id {
			return in, true
		}
	}
	return registry.Instance{}, false
}

func TestDeployStartsAnInstanceThatAnswersThroughItsProxy(t *testing.T) {
	w := newWorld(t)
	_, node := w.allocator(allocOpts{})
	w.service("hello", 100, 0, nil)
	start := time.Now()
	resp, err := w.deploy(node, "hello", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deploy to running: %s", time.Since(start))
	inst := *resp.Instance
	if inst.State != registry.StateRunning || inst.Node != node.ID().String() || inst.Runtime != registry.RuntimeProcess {
		t.Fatalf("instance %+v", inst)
	}
	body, err := w.get(inst)
	if err != nil || body != "hello from hello" {
		t.Fatalf("through the proxy: %q %v", body, err)
	}
	eventually.Succeeds(t, 5*time.Second, func() error {
		if rec, ok := w.record(inst.ID); !ok || rec.State != registry.StateRunning {
			return fmt.Errorf("record %+v (found %v)", rec, ok)
		}
		return nil
	})
}

// TestInstanceWhosePortIsTakenStartsOnOtherPorts: a port handed to an
// instance is bound by someone else before the instance binds it (another
// allocator on the host, any program). The start fails with "address
// already in use"; the allocator starts the instance again on new ports,
// and the deploy succeeds with the record's addresses on those.
func TestAStoppedInstanceFinishesTheRequestsItHas(t *testing.T) {
	w := newWorld(t)
	a, node := w.allocator(allocOpts{})
	w.service("slow", 100, 0, nil)
	resp, err := w.deploy(node, "slow", false)
	if err != nil {
		t.Fatal(err)
	}
	inst := *resp.Instance
	answer := make(chan error, 1)
	go func() {
		body, err := w.getPath(inst, "/?sleep=1500ms")
		if err == nil && body != "hello from slow" {
			err = fmt.Errorf("answer %q", body)
		}
		answer <- err
	}()
	eventually.Succeeds(t, 5*time.Second, func() error {
		if n := agent.InFlight(a, inst.ID); n != 1 {
			return fmt.Errorf("%d requests in flight", n)
		}
		return nil
	})
	start := time.Now()
	if err := deploy.Stop(t.Context(), w.client.Host(), node.ID(), inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := <-answer; err != nil {
		t.Fatalf("the request in flight when the stop came failed: %v", err)
	}
	t.Logf("stopped after %s", time.Since(start))
	if _, ok := w.record(inst.ID); ok {
		t.Fatalf("the record is still there after the stop")
	}
}

func TestInstanceWhosePortIsTakenStartsOnOtherPorts(t *testing.T) {
	w := newWorld(t)
	a, node := w.allocator(allocOpts{})
	w.service("hello", 100, 0, nil)
	// On 127.0.0.2: the service binds every address, so it conflicts,
	// while the proxy's readiness check (127.0.0.1) is not answered by
	// this listener instead of the service.
	taken, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().(*net.TCPAddr).Port
	var calls atomic.Int32
	agent.SetPortPicker(a, func(host string, n int, skip func(int) bool) ([]int, error) {
		ps, err := freeport.Take(host, n, skip)
		if err == nil && calls.Add(1) == 1 {
			ps[0] = busy // the service's port
		}
		return ps, err
	})
	resp, err := w.deploy(node, "hello", false)
	if err != nil {
		t.Fatalf("deploy with a taken port: %v", err)
	}
	if calls.Load() != 2 {
		t.Fatalf("ports picked %d times, want 2 (the taken one, then new ones)", calls.Load())
	}
	body, err := w.get(*resp.Instance)
	if err != nil || body != "hello from hello" {
		t.Fatalf("through the proxy on its new ports: %q %v", body, err)
	}
}

// TestStoppedWhileStartingReleasesOnce: an instance stopped while it
// starts gives its resources back exactly once (the start's failure path
// used to release them a second time, which panics), and they can be
// admitted again.
func TestStoppedWhileStartingReleasesOnce(t *testing.T) {
	w := newWorld(t)
	a, node := w.allocator(allocOpts{cfg: agent.Config{CPU: 1000, Memory: 1024, StartTimeout: 10 * time.Second}})
	w.service("slow", 600, 0, map[string]string{runtimetest.EnvTask: runtimetest.ModeSleep,
		runtimetest.EnvPort: strconv.Itoa(freeport.T(t))}) // never answers on SERVICE_PORT
	w.service("big", 600, 0, nil)
	done := make(chan error, 1)
	go func() { _, err := w.deploy(node, "slow", false); done <- err }()
	var id string
	eventually.Succeeds(t, 5*time.Second, func() error {
		insts := a.Instances()
		if len(insts) == 0 || insts[0].State != registry.StateStarting {
			return fmt.Errorf("no starting instance yet: %+v", insts)
		}
		id = insts[0].ID
		return nil
	})
	if err := deploy.Stop(t.Context(), w.client.Host(), node.ID(), id); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("the deploy of an instance stopped while starting succeeded")
	}
	if _, err := w.deploy(node, "big", false); err != nil {
		t.Fatalf("600m after the first 600m was stopped, on a 1000m node: %v", err)
	}
}

func TestAdmissionNeverOverCommits(t *testing.T) {
	w := newWorld(t)
	_, small := w.allocator(allocOpts{cfg: agent.Config{CPU: 1000, Memory: 1024}})
	w.service("big", 600, 0, nil)
	if _, err := w.deploy(small, "big", false); err != nil {
		t.Fatal(err)
	}
	_, err := w.deploy(small, "big", false)
	if wire.CodeOf(err) != wire.CodeNoCapacity || !errContains(err, "no capacity") {
		t.Fatalf("second 600m instance on a 1000m node: %v", err)
	}
	// Placement moves on to a node with room.
	_, other := w.allocator(allocOpts{cfg: agent.Config{CPU: 1000, Memory: 1024}})
	waitNodes(t, w, 2)
	placer := deploy.NewPlacer(w.client.Node, w.rc, nil)
	resp, err := placer.Place(t.Context(), "big", nil, deploy.PlaceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Instance.Node != other.ID().String() {
		t.Fatalf("placed on %s, want the node with room %s", resp.Instance.Node, other.ID())
	}
}

func TestConcurrentDeploysNeverOverCommit(t *testing.T) {
	w := newWorld(t)
	a, node := w.allocator(allocOpts{cfg: agent.Config{CPU: 1000, Memory: 4096}})
	w.service("quarter", 250, 0, nil)
	var mu sync.Mutex
	var ok, refused int
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := w.deploy(node, "quarter", false)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case wire.CodeOf(err) == wire.CodeNoCapacity:
				refused++
			default:
				t.Errorf("deploy: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 4 || refused != 16 {
		t.Fatalf("%d admitted, %d refused; want 4 and 16 (1000m / 250m)", ok, refused)
	}
	if n := len(a.Instances()); n != 4 {
		t.Fatalf("%d instances run", n)
	}
}

func TestPlacementPicksTheNodeWithinTheHardRTT(t *testing.T) {
	w := newWorld(t)
	_, near := w.allocator(allocOpts{delay: 5 * time.Millisecond})
	_, far := w.allocator(allocOpts{delay: 40 * time.Millisecond})
	w.service("latency-bound", 10, 20, nil)
	waitNodes(t, w, 2)
	placer := deploy.NewPlacer(w.client.Node, w.rc, nil)
	for i := range 5 {
		resp, err := placer.Place(t.Context(), "latency-bound", nil, deploy.PlaceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Instance.Node != near.ID().String() {
			t.Fatalf("placement %d landed on %s (the 40 ms node is %s), want the 5 ms node", i, resp.Instance.Node, far.ID())
		}
	}
}

func TestCrashingInstanceIsRestartedThenMarkedFailed(t *testing.T) {
	w := newWorld(t)
	_, node := w.allocator(allocOpts{cfg: agent.Config{MaxRestarts: 3}})
	w.service("flaky", 10, 0, map[string]string{runtimetest.EnvTask: runtimetest.ModeCrash, runtimetest.EnvCrashes: "2"})
	resp, err := w.deploy(node, "flaky", false)
	if err != nil {
		t.Fatalf("an instance that crashes twice then runs: %v", err)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		if rec, _ := w.record(resp.Instance.ID); rec.Restarts != 2 {
			return fmt.Errorf("record shows %d restarts", rec.Restarts)
		}
		return nil
	})

	w.service("broken", 10, 0, map[string]string{runtimetest.EnvTask: runtimetest.ModeCrash, runtimetest.EnvCrashes: "1000"})
	_, err = w.deploy(node, "broken", false)
	if wire.CodeOf(err) != wire.CodeRuntimeError {
		t.Fatalf("an instance that keeps crashing: %v", err)
	}
	insts, _ := w.rc.ListInstances(t.Context(), "broken")
	if len(insts) != 1 || insts[0].State != registry.StateFailed || insts[0].Message == "" {
		t.Fatalf("failed instance not reported: %+v", insts)
	}
	t.Logf("reported: %s", insts[0].Message)
}

// TestIdleOnDemandInstanceIsCulled: an on-demand instance that serves
// nothing for the idle timeout is stopped; an explicitly deployed one,
// as idle, runs on.
func TestIdleOnDemandInstanceIsCulled(t *testing.T) {
	const idle = 500 * time.Millisecond
	w := newWorld(t)
	a, node := w.allocator(allocOpts{cfg: agent.Config{IdleTimeout: idle}})
	w.service("idle", 10, 0, nil)
	onDemand, err := w.deploy(node, "idle", true)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := w.deploy(node, "idle", false)
	if err != nil {
		t.Fatal(err)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		if _, ok := w.record(onDemand.Instance.ID); ok {
			return fmt.Errorf("idle on-demand instance still there")
		}
		return nil
	})
	// The culler is at work; the pinned instance, idle since it started,
	// must outlive three more idle timeouts of it.
	runsThroughout(t, w, a, pinned.Instance.ID, 3*idle)
}

// runsThroughout samples instance id every 50 ms for d and fails at the
// first sample where its allocator a does not run it or the registry
// holds no running record of it.
func runsThroughout(t *testing.T, w *world, a *agent.Agent, id string, d time.Duration) {
	t.Helper()
	sample := time.NewTicker(50 * time.Millisecond)
	defer sample.Stop()
	start := time.Now()
	for samples := 1; time.Since(start) < d; samples++ {
		running := false
		for _, in := range a.Instances() {
			running = running || in.ID == id && in.State == registry.StateRunning
		}
		if !running {
			t.Fatalf("sample %d, %s in: instance %s is not running on its allocator: %+v",
				samples, time.Since(start).Round(time.Millisecond), id, a.Instances())
		}
		if rec, ok := w.record(id); !ok || rec.State != registry.StateRunning {
			t.Fatalf("sample %d, %s in: registry record of instance %s: %+v (found %v)",
				samples, time.Since(start).Round(time.Millisecond), id, rec, ok)
		}
		<-sample.C
	}
}

func TestStartingInstanceIsNeverCulled(t *testing.T) {
	w := newWorld(t)
	a, node := w.allocator(allocOpts{cfg: agent.Config{IdleTimeout: 200 * time.Millisecond, StartTimeout: 3 * time.Second}})
	// Listens on a port of its own, not SERVICE_PORT: it never becomes
	// healthy.
	w.service("slow", 10, 0, map[string]string{runtimetest.EnvTask: runtimetest.ModeSleep,
		runtimetest.EnvPort: strconv.Itoa(freeport.T(t))})
	done := make(chan error, 1)
	go func() { _, err := w.deploy(node, "slow", true); done <- err }()
	eventually.Succeeds(t, 5*time.Second, func() error {
		if insts := a.Instances(); len(insts) == 0 || insts[0].State != registry.StateStarting {
			return fmt.Errorf("no starting instance yet: %+v", insts)
		}
		return nil
	})
	// Sample the state over ten idle timeouts: it must stay "starting".
	sample := time.NewTicker(50 * time.Millisecond)
	defer sample.Stop()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); <-sample.C {
		insts := a.Instances()
		if len(insts) != 1 || insts[0].State != registry.StateStarting {
			t.Fatalf("instances while starting: %+v", insts)
		}
	}
	if err := <-done; wire.CodeOf(err) != wire.CodeRuntimeError {
		t.Fatalf("deploy of a service that never answers: %v", err)
	}
}

func TestOnDemandRequestsShareAnInstance(t *testing.T) {
	w := newWorld(t)
	a, node := w.allocator(allocOpts{})
	w.service("shared", 10, 0, nil)
	var wg sync.WaitGroup
	ids := make([]string, 30)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := w.deploy(node, "shared", true)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = resp.Instance.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent on-demand deploys started several instances: %v", ids)
		}
	}
	if n := len(a.Instances()); n != 1 {
		t.Fatalf("%d instances", n)
	}
}

func TestBadRequestsAreRefusedAndTheAllocatorKeepsServing(t *testing.T) {
	w := newWorld(t)
	_, node := w.allocator(allocOpts{})
	if _, err := w.deploy(node, "nope", false); wire.CodeOf(err) != wire.CodeNotFound {
		t.Fatalf("unknown service: %v", err)
	}
	if _, err := w.deploy(node, "Not A Name", false); wire.CodeOf(err) != wire.CodeBadRequest {
		t.Fatalf("ill-formed name: %v", err)
	}
	if _, err := w.rc.AddService(t.Context(), "docker-only", registry.ServiceInfo{DockerHash: "sha256:abc"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.deploy(node, "docker-only", false); wire.CodeOf(err) != wire.CodeUnsupported {
		t.Fatalf("a service the node cannot run: %v", err)
	}
	err := w.client.Host().Connect(t.Context(), node.AddrInfo())
	if err != nil {
		t.Fatal(err)
	}
	err = wire.Call(t.Context(), w.client.Host(), node.ID(), deploy.Protocol, map[string]any{"Op": "deploy", "Servce": "x"}, nil, wire.CallOptions{})
	if wire.CodeOf(err) != wire.CodeBadRequest {
		t.Fatalf("malformed request: %v", err)
	}
	err = wire.Call(t.Context(), w.client.Host(), node.ID(), deploy.Protocol, deploy.Request{Op: "explode"}, nil, wire.CallOptions{})
	if wire.CodeOf(err) != wire.CodeBadRequest {
		t.Fatalf("unknown op: %v", err)
	}
	w.service("fine", 10, 0, nil)
	if _, err := w.deploy(node, "fine", false); err != nil {
		t.Fatalf("allocator stopped serving after bad input: %v", err)
	}
}

func waitNodes(t *testing.T, w *world, n int) {
	t.Helper()
	eventually.Succeeds(t, 10*time.Second, func() error {
		nodes, err := w.rc.ListNodes(t.Context())
		if err != nil {
			return err
		}
		if len(nodes) != n {
			return fmt.Errorf("%d node records", len(nodes))
		}
		return nil
	})
}

func errContains(err error, s string) bool {
	return err != nil && contains(err.Error(), s)
}

// TestCloseWhileAnInstanceStartsLeavesNothingRunning: an allocator that
// stops while an instance waits to be healthy stops that instance too
// (the runtime had started it; the wait ended with the stop).
func TestCloseWhileAnInstanceStartsLeavesNothingRunning(t *testing.T) {
	w := newWorld(t)
	a, node := w.allocator(allocOpts{cfg: agent.Config{CPU: 1000, Memory: 1024, StartTimeout: 30 * time.Second}})
	port := strconv.Itoa(freeport.T(t))
	w.service("slow", 100, 0, map[string]string{runtimetest.EnvTask: runtimetest.ModeSleep, runtimetest.EnvPort: port}) // never answers on SERVICE_PORT
	go func() { _, _ = w.deploy(node, "slow", false) }()
	eventually.True(t, 10*time.Second, "the instance's process runs", func() bool {
		return len(launch.PIDsWithEnv(runtimetest.EnvPort+"="+port)) > 0
	})
	a.Close()
	eventually.True(t, 10*time.Second, "nothing of the instance runs after Close", func() bool {
		return len(launch.PIDsWithEnv(runtimetest.EnvPort+"="+port)) == 0
	})
}
