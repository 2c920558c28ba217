package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	lpnet "github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/keys"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/psk"
	"github.com/physarum-p2p/physarum/registry"
)

// network is one private Physarum network of processes on loopback, with
// its own passphrase and directory, started for one scenario.
type network struct {
	s    *suite
	r    *run
	dir  string
	pass string
	fast bool
	env  []string

	reg      *launch.Proc
	regAddr  string
	regData  string
	etcdPort int
	// api is the registry's HTTP API (http://127.0.0.1:PORT) and metrics
	// its Prometheus endpoint (http://127.0.0.1:PORT/metrics).
	api, metrics string

	mu      sync.Mutex
	allocs  []*allocator
	proxies []*clientProxy
	cl      *client
}

// allocator is one allocator process.
type allocator struct {
	name    string
	p       *launch.Proc
	peer    peer.ID
	addr    string
	dataDir string
	runtime string
}

// allocSpec says how to start an allocator.
type allocSpec struct {
	name    string
	runtime string // docker, process or auto
	cpus    string
	memory  int
	// logLevel overrides the suite's -log-level for this allocator.
	logLevel string
	// leaseTTL is its -lease-ttl (0: the default).
	leaseTTL time.Duration
	// extra flags come last.
	extra []string
	// env is added to the network's environment (DOCKER_HOST of a
	// Docker daemon of its own, say).
	env []string
}

// clientProxy is a proxy in client mode.
type clientProxy struct {
	p    *launch.Proc
	port int
	url  string // http://127.0.0.1:PORT
}

// newNetwork prepares a network for r: a directory and a fresh
// passphrase. fast sets PHYSARUM_FAST_TIMING=1 on every process.
func (s *suite) newNetwork(r *run, name string, fast bool) (*network, error) {
	dir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	n := &network{s: s, r: r, dir: dir, pass: hex.EncodeToString(b), fast: fast}
	n.env = []string{"P2P_PSK=" + n.pass}
	if fast {
		n.env = append(n.env, "PHYSARUM_FAST_TIMING=1")
	} else {
		n.env = append(n.env, "PHYSARUM_FAST_TIMING=0")
	}
	return n, nil
}

func (n *network) timing() string {
	if n.fast {
		return "PHYSARUM_FAST_TIMING=1"
	}
	return "default (production) timing"
}

func (n *network) bin(name string) string { return filepath.Join(n.s.o.bin, name) }

// startRegistry starts the first registry-service member and makes it the
// network's bootstrap peer.
func (n *network) startRegistry(ctx context.Context) error {
	n.regData = filepath.Join(n.dir, "registry")
	n.etcdPort = freeport.One("127.0.0.1")
	metrics := "127.0.0.1:" + strconv.Itoa(freeport.One("127.0.0.1"))
	r := launch.Registry{
		Node: launch.Node{
			KeyFile: filepath.Join(n.dir, "registry.key"), AddrFile: filepath.Join(n.dir, "registry.addr"),
			LogLevel: n.s.o.logLevel, Metrics: metrics,
		},
		DataDir: n.regData, ClientPort: n.etcdPort,
	}
	p, err := n.s.procs.spawn(n.dir, "registry", n.bin("registry-service"), r.Args(), n.env)
	if err != nil {
		return err
	}
	n.reg = p
	n.api, n.metrics = r.APIURL(), "http://"+metrics+"/metrics"
	if n.regAddr, err = p.Ready(ctx, launch.RegistryReady, time.Minute, r.AddrFile); err != nil {
		return err
	}
	n.env = append(n.env, "P2P_BOOTSTRAPS="+n.regAddr)
	return nil
}

// spawnAllocator starts an allocator without waiting for it.
func (n *network) spawnAllocator(spec allocSpec) (*allocator, error) {
	a := &allocator{name: spec.name, dataDir: filepath.Join(n.dir, spec.name), runtime: spec.runtime}
	level := n.s.o.logLevel
	if spec.logLevel != "" {
		level = spec.logLevel
	}
	p, err := n.s.procs.spawn(n.dir, spec.name, n.bin("allocator"), launch.Allocator{
		Node: launch.Node{
			KeyFile: filepath.Join(n.dir, spec.name+".key"), AddrFile: filepath.Join(n.dir, spec.name+".addr"),
			LogLevel: level,
		},
		Name: spec.name, DataDir: a.dataDir, Runtime: spec.runtime, CPUs: spec.cpus, MemoryMiB: spec.memory,
		Proxy: n.bin("proxy"), IdleTimeout: 30 * time.Minute, LeaseTTL: spec.leaseTTL, Extra: spec.extra,
	}.Args(), append(slices.Clip(n.env), spec.env...))
	if err != nil {
		return nil, err
	}
	a.p = p
	n.mu.Lock()
	n.allocs = append(n.allocs, a)
	n.mu.Unlock()
	return a, nil
}

// ready waits until the allocator says it is ready and reads its address.
func (a *allocator) ready(ctx context.Context, dir string, timeout time.Duration) error {
	addr, err := a.p.Ready(ctx, launch.AllocatorReady, timeout, filepath.Join(dir, a.name+".addr"))
	if err != nil {
		return err
	}
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return fmt.Errorf("%s address %q: %w", a.name, addr, err)
	}
	a.addr, a.peer = addr, ai.ID
	return nil
}

// startAllocators starts allocators in parallel and waits for all.
func (n *network) startAllocators(ctx context.Context, specs ...allocSpec) ([]*allocator, error) {
	var out []*allocator
	for _, spec := range specs {
		a, err := n.spawnAllocator(spec)
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	for _, a := range out {
		if err := a.ready(ctx, n.dir, time.Minute); err != nil {
			return out, err
		}
		if a.runtime != "process" {
			n.s.noteDockerNode(a.peer.String())
		}
	}
	return out, nil
}

// startProxy starts a client proxy.
// proxyOnceListed waits until the registry lists the allocators started
// (allocators of them), then starts the client proxy: its first request
// finds them all.
func (n *network) proxyOnceListed(ctx context.Context, allocators int) (*clientProxy, error) {
	c, err := n.client(ctx)
	if err != nil {
		return nil, err
	}
	if _, _, err := n.waitNodes(ctx, c, allocators); err != nil {
		return nil, err
	}
	return n.startProxy(ctx, "client-proxy")
}

func (n *network) startProxy(ctx context.Context, name string) (*clientProxy, error) {
	var last error
	for range 3 { // the free port may be taken in between
		port := freeport.One("127.0.0.1")
		p, err := n.s.procs.spawn(n.dir, name, n.bin("proxy"), launch.ClientProxy{
			Node:     launch.Node{KeyFile: filepath.Join(n.dir, name+".key"), LogLevel: n.s.o.logLevel},
			HTTPPort: port,
		}.Args(), n.env)
		if err != nil {
			return nil, err
		}
		if last = p.WaitOutput(ctx, launch.ProxyReady, 30*time.Second); last == nil {
			cp := &clientProxy{p: p, port: port, url: "http://127.0.0.1:" + strconv.Itoa(port)}
			n.mu.Lock()
			n.proxies = append(n.proxies, cp)
			n.mu.Unlock()
			return cp, nil
		}
		p.Stop(5 * time.Second)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, last
}

// cli runs registry-cli and returns its stdout.
func (n *network) cli(ctx context.Context, args ...string) (string, error) {
	return n.cliEnv(ctx, nil, args...)
}

// cliEnv runs registry-cli with env added to the network's.
func (n *network) cliEnv(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.bin("registry-cli"), append([]string{"-keyfile", filepath.Join(n.dir, "cli.key")}, args...)...)
	cmd.Env = append(append(os.Environ(), n.env...), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("registry-cli %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// serviceConfig writes a service config from demos/services: the process
// (exec) or Docker one, with ${DEMO_BIN} filled in and the CPU and memory
// asked for replaced when cpu > 0.
func (n *network) serviceConfig(service, kind string, cpu, mem int) (string, error) {
	b, err := os.ReadFile(filepath.Join(n.s.o.services, service+"."+kind+".json"))
	if err != nil {
		return "", fmt.Errorf("service config: %w", err)
	}
	b = []byte(strings.ReplaceAll(string(b), "${DEMO_BIN}", n.s.o.bin))
	if cpu > 0 {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return "", fmt.Errorf("service config %s: %w", service, err)
		}
		m["CpuReq"], m["MemoryReq"] = cpu, mem
		if b, err = json.MarshalIndent(m, "", "  "); err != nil {
			return "", err
		}
	}
	path := filepath.Join(n.dir, fmt.Sprintf("%s.%s.%d.json", service, kind, cpu))
	return path, os.WriteFile(path, b, 0o644)
}

// addProcessService registers hello for the process runtime under name
// with registry-cli (cpu 0 keeps the config's requirements).
func (n *network) addProcessService(ctx context.Context, name string, cpu, mem int) error {
	cfg, err := n.serviceConfig("hello", "exec", cpu, mem)
	if err != nil {
		return err
	}
	_, err = n.cli(ctx, "add", cfg, name)
	return err
}

// addDockerService registers hello for the Docker runtime under name,
// building the suite's image the first time (FROM scratch, with bin/proxy
// inside) and reusing it afterwards.
func (n *network) addDockerService(ctx context.Context, name string) error {
	cfg, err := n.serviceConfig("hello", "docker", 0, 0)
	if err != nil {
		return err
	}
	n.s.imageMu.Lock()
	defer n.s.imageMu.Unlock()
	if n.s.imageBuilt {
		_, err = n.cli(ctx, "add", "-use-existing-image", cfg, benchImage, name)
		return err
	}
	start := time.Now()
	if _, err = n.cli(ctx, "add", "-dir", n.s.o.bin, "-custom-proxy", n.bin("proxy"), cfg, benchImage, name); err != nil {
		return err
	}
	n.s.imageBuilt = true
	n.r.say("built image %s (FROM scratch, hello + bin/proxy) in %s", benchImage, since(start))
	return nil
}

// copyService registers the definition of from under the names given,
// through the in-process client (cheaper than one registry-cli each).
func (n *network) copyService(ctx context.Context, from string, names ...string) error {
	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	info, err := c.reg.GetService(ctx, from)
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, err := c.reg.AddService(ctx, name, info); err != nil {
			return err
		}
	}
	return nil
}

// close stops the network: proxies, then allocators (which stop their
// instances), then the registry; then it kills whatever is left.
func (n *network) close() {
	start := time.Now()
	n.mu.Lock()
	cl := n.cl
	n.cl = nil
	var procs []*launch.Proc
	for _, p := range n.proxies {
		procs = append(procs, p.p)
	}
	var allocs []*launch.Proc
	for _, a := range n.allocs {
		allocs = append(allocs, a.p)
	}
	n.mu.Unlock()
	if cl != nil {
		cl.close()
	}
	killed := stopAll(procs, 10*time.Second)
	killed = append(killed, stopAll(allocs, 30*time.Second)...)
	if n.reg != nil && n.reg.Stop(15*time.Second) {
		killed = append(killed, n.reg)
	}
	if len(killed) > 0 {
		var names []string
		for _, p := range killed {
			names = append(names, p.Name)
		}
		n.r.failf("%d processes did not exit within their grace period after SIGTERM and were killed: %s; last log lines of %s: %s",
			len(killed), strings.Join(names, ", "), killed[0].Name, killed[0].Tail(4))
	}
	if k := sweepInstances(n.dir, n.s.o.bin); k > 0 {
		n.r.failf("%d instance processes outlived their allocators and were killed", k)
	}
	n.r.say("network stopped in %s", since(start))
}

// client is the suite's own node in the network: a libp2p host in this
// process, bootstrapped to the registry, with a registry client.
type client struct {
	node *p2p.Node
	reg  *registry.Client
}

// client returns the network's in-process client node, starting it the
// first time.
func (n *network) client(ctx context.Context) (*client, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cl != nil {
		return n.cl, nil
	}
	c, err := newClient(ctx, n.pass, n.regAddr, n.fast)
	if err != nil {
		return nil, err
	}
	n.cl = c
	return c, nil
}

func newClient(ctx context.Context, pass, boot string, fast bool) (*client, error) {
	key, err := psk.Derive(pass)
	if err != nil {
		return nil, err
	}
	id, err := keys.Generate("Ed25519", 0)
	if err != nil {
		return nil, err
	}
	boots, err := nodeflags.ParseBootstraps([]string{boot})
	if err != nil {
		return nil, err
	}
	cfg := p2p.Config{
		PSK: key, Identity: id, Bootstraps: boots,
		ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
		UserAgent:   "physarum/bench",
	}
	if fast {
		cfg.Timing = p2p.FastTiming()
	}
	node, err := p2p.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("start the client node: %w", err)
	}
	if err := node.Bootstrapped(ctx); err != nil {
		_ = node.Close()
		return nil, fmt.Errorf("client node: %w", err)
	}
	return &client{node: node, reg: registry.NewClient(node, registry.Options{})}, nil
}

func (c *client) close() {
	c.reg.Close()
	_ = c.node.Close()
}

// connect makes sure the client is connected to allocator a.
func (c *client) connect(ctx context.Context, a *allocator) error {
	ai, err := peer.AddrInfoFromString(a.addr)
	if err != nil {
		return err
	}
	return c.node.Host().Connect(ctx, *ai)
}

// deployTo asks allocator a for a new (explicit) instance of service and
// returns it once running, with the time the request and the answer were
// seen.
func (c *client) deployTo(ctx context.Context, a *allocator, service string) (*registry.Instance, time.Time, time.Time, error) {
	if err := c.connect(ctx, a); err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	t0 := time.Now()
	resp, err := deploy.Deploy(ctx, c.node.Host(), a.peer, service, false)
	t1 := time.Now()
	if err != nil {
		return nil, t0, t1, err
	}
	return resp.Instance, t0, t1, nil
}

// stopInstance asks the allocator running in to stop it.
func (c *client) stopInstance(ctx context.Context, in *registry.Instance) error {
	id, err := peer.Decode(in.Node)
	if err != nil {
		return err
	}
	if err := c.dialNode(ctx, id); err != nil {
		return err
	}
	return deploy.Stop(ctx, c.node.Host(), id, in.ID)
}

// dialNode connects to an allocator by its node record's addresses, as
// registry-cli stop does: a client that placed nothing there (the
// instance came from a proxy) need not know them.
func (c *client) dialNode(ctx context.Context, id peer.ID) error {
	if c.node.Host().Network().Connectedness(id) == lpnet.Connected {
		return nil
	}
	nodes, err := c.reg.ListNodes(ctx)
	if err != nil {
		return err
	}
	for _, nd := range nodes {
		if nd.PeerID != id.String() {
			continue
		}
		ai := peer.AddrInfo{ID: id}
		for _, a := range nd.Addrs {
			if m, err := ma.NewMultiaddr(a); err == nil {
				ai.Addrs = append(ai.Addrs, m)
			}
		}
		return c.node.Host().Connect(ctx, ai)
	}
	return fmt.Errorf("allocator %s has no node record", id.ShortString())
}

// stopInstances stops instances in parallel and returns the first error.
func (c *client) stopInstances(ctx context.Context, ins []*registry.Instance) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ins))
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.stopInstance(ctx, in)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// instanceEnv reads the environment an allocator's process runtime gave
// instance id, and the pid of the instance's proxy (the process it
// started), from its state.json.
func (a *allocator) instanceEnv(id string) (map[string]string, int, error) {
	b, err := os.ReadFile(filepath.Join(a.dataDir, "instances", id, "state.json"))
	if err != nil {
		return nil, 0, err
	}
	var rec struct {
		Spec struct {
			Env map[string]string `json:"Env"`
		} `json:"spec"`
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, 0, fmt.Errorf("state.json of %s: %w", id, err)
	}
	return rec.Spec.Env, rec.Pid, nil
}

func since(t time.Time) string { return time.Since(t).Round(10 * time.Millisecond).String() }
