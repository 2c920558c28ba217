// Package agent is the allocator's core: admission control over the CPU
// and memory the node offers, instances started through the runtimes,
// health-checked, supervised and culled when idle, their records and the
// node's record (with the instances' load and the RTTs to the other
// allocators) kept in the registry under the node's lease, and adoption of
// its own instances after a restart.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// Config configures an Agent.
type Config struct {
	// Name is the allocator's name (its -name): unique among the live
	// nodes of the network, published in the node record, and the name of
	// the compute made of this node alone. Empty: "node-" and the last 10
	// characters of the peer ID, lower-cased.
	Name string
	// CPU and Memory are the capacity offered, in millicores and MiB.
	CPU, Memory int
	// Labels are operator-given tags published in the node record.
	Labels map[string]string
	// ProxyPath is the proxy binary process instances run under.
	ProxyPath string
	// IdleTimeout is how long an on-demand instance may serve nothing
	// before it is stopped (default 5m).
	IdleTimeout time.Duration
	// LeaseTTL is the node record's lease, in whole seconds (default 10s);
	// records are renewed every third of it.
	LeaseTTL time.Duration
	// StartTimeout bounds starting an instance until it is healthy
	// (default 60s).
	StartTimeout time.Duration
	// StatusEvery is how often instances are polled for health, idle
	// time and load (default 1s).
	StatusEvery time.Duration
	// MaxRestarts bounds restarts of a crashing instance before it is
	// marked failed; 0 means none (the allocator's flag defaults to 5).
	MaxRestarts int
	// StartBackoff is how long a service that failed to start here is
	// refused here (the requester tries another node); it doubles with
	// each failure in a row up to StartBackoffMax (defaults 10s and 5m).
	StartBackoff, StartBackoffMax time.Duration
	// DrainGrace bounds how long a stopping instance may take to finish
	// its requests in flight (it gets no new ones) before it is stopped
	// anyway (default 10s).
	DrainGrace time.Duration
	// KeepInstances leaves instances running when the agent closes (for
	// upgrades: the next agent adopts them). By default Close stops them.
	KeepInstances bool
	// Images, when set, returns the IDs of the registered services'
	// images this node's Docker daemon holds, published in the node record
	// (placement prefers holders).
	Images func() []string
	// PeerListEvery is how often the registry's node list is read to
	// learn the other allocators, whose RTTs the node record publishes
	// (measured every third of LeaseTTL; default 30s). After the start
	// the list is read sooner (after one round of pings, two, four, ...)
	// until it is read this often. A new allocator shows in the others'
	// records within about this long.
	PeerListEvery time.Duration
	// Logger and Registerer receive the agent's logs and metrics.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.LeaseTTL < 2*time.Second {
		c.LeaseTTL = 10 * time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.DrainGrace <= 0 {
		c.DrainGrace = 10 * time.Second
	}
	if c.StatusEvery <= 0 {
		c.StatusEvery = time.Second
	}
	if c.StartBackoff <= 0 {
		c.StartBackoff = 10 * time.Second
	}
	if c.StartBackoffMax <= 0 {
		c.StartBackoffMax = 5 * time.Minute
	}
	c.MaxRestarts = max(c.MaxRestarts, 0)
	if c.PeerListEvery <= 0 {
		c.PeerListEvery = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Agent runs instances on this node.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	node     *p2p.Node
	reg      *registry.Client
	runtimes map[string]runtime.Runtime // by name
	order    []string                   // runtime names, preferred first
	res      *resources
	ports    *portPool
	metrics  *metrics
	rpc      *wire.Server
	failures *startFailures

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // publish the node record now

	// onDemandMu serializes reuseOrStart for on-demand requests.
	onDemandMu sync.Mutex
	mu         sync.Mutex
	instances  map[string]*instance
	degraded   map[string]string // runtime -> why it is unusable now
	// admitHook, when set (by tests), runs in start just before the
	// instance is admitted.
	admitHook func()
	// closed is set, under mu, before Close lists the instances to stop:
	// an instance is admitted only under mu while it is false, so none
	// escapes that list.
	closed bool
	// closing skips per-instance registry writes while the agent stops
	// everything: removing the node record (its lease) removes them all,
	// and with the registry unreachable they would only add timeouts.
	closing atomic.Bool

	rttMu sync.Mutex
	rtts  []registry.PeerRTT // the node record's RTTs (rtts.go)
}

// New creates an agent on node n with the given runtimes (preferred
// first), adopts the instances they already run, and starts serving deploy
// requests and publishing the node record.
func New(ctx context.Context, n *p2p.Node, reg *registry.Client, rts []runtime.Runtime, cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if len(rts) == 0 {
		return nil, errors.New("agent: no runtime")
	}
	if cfg.CPU <= 0 || cfg.Memory <= 0 {
		return nil, fmt.Errorf("agent: capacity must be positive (cpu %d millicores, memory %d MiB)", cfg.CPU, cfg.Memory)
	}
	if cfg.Name == "" {
		cfg.Name = defaultName(n.ID().String())
	}
	if err := registry.ValidateComputeName(cfg.Name); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	actx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		cfg: cfg, log: cfg.Logger, node: n, reg: reg, runtimes: map[string]runtime.Runtime{},
		res: newResources(cfg.CPU, cfg.Memory), ports: newPortPool(), metrics: newMetrics(cfg.Registerer),
		failures: newStartFailures(cfg.StartBackoff, cfg.StartBackoffMax),
		ctx:      actx, cancel: cancel, kick: make(chan struct{}, 1),
		instances: map[string]*instance{}, degraded: map[string]string{},
	}
	for _, rt := range rts {
		a.runtimes[rt.Name()] = rt
		a.order = append(a.order, rt.Name())
	}
	a.metrics.observeResources(a)
	// The first record is published before anything else is touched: a
	// name another live node holds stops the agent here, with its
	// runtimes' instances as they were.
	if err := a.firstPublish(ctx); err != nil {
		cancel()
		a.metrics.unregister()
		return nil, err
	}
	if err := a.adopt(ctx); err != nil {
		cancel()
		a.metrics.unregister()
		return nil, err
	}
	a.rpc = wire.NewServer(n.Host(), a.log, nil)
	a.rpc.Handle(deploy.Protocol, a.handle, wire.HandleOptions{MaxRequest: 16 << 10, MaxResponse: 4 << 20, Timeout: cfg.StartTimeout + 10*time.Second})
	a.goLoop(a.publishLoop)
	a.goLoop(a.rttLoop)
	n.Advertise(deploy.Rendezvous)
	return a, nil
}

// defaultName is the name of an agent configured without one.
func defaultName(peerID string) string {
	return "node-" + strings.ToLower(peerID[max(len(peerID)-10, 0):])
}

// Name is the allocator's name, as published in its node record.
func (a *Agent) Name() string { return a.cfg.Name }

func (a *Agent) goLoop(fn func(ctx context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn(a.ctx)
	}()
}

// Close stops serving; unless Config.KeepInstances, it stops every
// instance and removes the node record. It waits for the agent's
// goroutines.
func (a *Agent) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	insts := a.snapshot()
	a.mu.Unlock()

	a.rpc.Close()
	a.closing.Store(true)
	if !a.cfg.KeepInstances {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var wg sync.WaitGroup
		for _, in := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.stop(ctx, in, "allocator shutting down")
			}()
		}
		wg.Wait()
		cancel()
		// Best effort, and quick: with the registry gone, the lease
		// removes the record anyway.
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := a.reg.DeleteNode(dctx); err != nil {
			a.log.Warn("could not remove the node record; it expires with its lease", "err", err)
		}
		dcancel()
	}
	a.cancel()
	a.wg.Wait()
	a.metrics.unregister()
}

// snapshot lists the instances; call with a.mu held.
func (a *Agent) snapshot() []*instance {
	out := make([]*instance, 0, len(a.instances))
	for _, in := range a.instances {
		out = append(out, in)
	}
	return out
}

// Runtimes lists the names of the runtimes usable now, preferred first.
func (a *Agent) Runtimes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, name := range a.order {
		if a.degraded[name] == "" {
			out = append(out, name)
		}
	}
	return out
}

// Instances returns the records of the node's instances.
func (a *Agent) Instances() []registry.Instance {
	a.mu.Lock()
	insts := a.snapshot()
	a.mu.Unlock()
	out := make([]registry.Instance, 0, len(insts))
	for _, in := range insts {
		out = append(out, in.record())
	}
	return out
}

// Republish publishes the node record at once (something in it changed,
// such as the images held).
func (a *Agent) Republish() { a.publishNow() }

// publishNow asks the publish loop for an update at once.
func (a *Agent) publishNow() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) degradedReason(runtime string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.degraded[runtime]
}
