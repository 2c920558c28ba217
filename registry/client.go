package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"

	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/wire"
)

// Errors a caller may want to tell apart; check with errors.Is. They match
// any server refusal with the same code.
var (
	ErrNotFound  = &wire.Error{Code: wire.CodeNotFound}
	ErrForbidden = &wire.Error{Code: wire.CodeForbidden}
	// ErrNoRegistry means no registry-service could be found or reached.
	ErrNoRegistry = errors.New("no registry-service reachable (is one running in this network? check the PSK and the bootstrap address)")
)

// Options tune a Client. The zero value is usable.
type Options struct {
	// Timeout bounds one attempt against one registry (default 5s).
	Timeout time.Duration
	// Attempts bounds how many registries one call tries (default 3).
	Attempts int
	// FindTimeout bounds waiting for a first registry to be known
	// (default 10s).
	FindTimeout time.Duration
	// Logger receives the client's events (default: discard).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.FindTimeout <= 0 {
		o.FindTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// finder yields registry peers, nearest first.
type finder interface {
	// candidates returns the registries known now, nearest first.
	candidates() []peer.ID
	// refresh asks for a lookup and waits (bounded by ctx) until at least
	// one registry is known.
	wait(ctx context.Context) error
	close()
}

// Client talks to the registry. It tries the nearest registry-service
// first and fails over to the next on errors that another one could
// answer; refusals (bad request, not found, forbidden) are returned at
// once. Safe for concurrent use.
type Client struct {
	host   host.Host
	find   finder
	opts   Options
	reach  *reachability
	closer func()
}

// NewClient returns a Client that finds registries from node n: peers
// already connected that speak the registry protocol (the bootstrap often
// does), and those advertising under Rendezvous. Close it when done.
func NewClient(n *p2p.Node, opts Options) *Client {
	f := &nodeFinder{n: n, stop: make(chan struct{}), done: make(chan struct{})}
	go f.later(n.Config().Timing.RefreshJitter)
	opts = opts.withDefaults()
	return &Client{host: n.Host(), find: f, opts: opts, reach: newReachability(opts.Logger)}
}

// Close stops the client's lookups.
func (c *Client) Close() {
	c.find.close()
	if c.closer != nil {
		c.closer()
	}
}

// Host is the libp2p host the client speaks from.
func (c *Client) Host() host.Host { return c.host }

// connectedRegistries lists connected peers known to speak Protocol.
func connectedRegistries(h host.Host) []peer.ID {
	var out []peer.ID
	for _, p := range h.Network().Peers() {
		if ok, _ := h.Peerstore().SupportsProtocols(p, Protocol); len(ok) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// nodeFinder finds registries: first among the peers it is connected to
// (a registry is usually the bootstrap peer), and through the DHT when
// there is none, or after a while in any case, to know the others for
// failover. Looking the rendezvous up from every node at start would make
// a hundred nodes started together sweep the network all at once.
type nodeFinder struct {
	n    *p2p.Node
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	disc *p2p.Discovery // nil until needed
}

// discovery starts the DHT lookups of the rendezvous, once.
func (f *nodeFinder) discovery() *p2p.Discovery {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.disc == nil {
		f.disc = f.n.Discover(Rendezvous)
	}
	return f.disc
}

// later starts the lookups after a random pause within jitter, unless the
// finder is closed first.
func (f *nodeFinder) later(jitter time.Duration) {
	defer close(f.done)
	select {
	case <-f.stop:
	case <-time.After(time.Duration(rand.Int64N(int64(jitter) + 1))):
		f.discovery()
	}
}

func (f *nodeFinder) candidates() []peer.ID {
	seen := map[peer.ID]bool{}
	var known, unknown []peer.ID
	add := func(p peer.ID) {
		if seen[p] || p == f.n.ID() {
			return
		}
		seen[p] = true
		if _, ok := f.n.RTT().Get(p); ok {
			known = append(known, p)
		} else {
			unknown = append(unknown, p)
		}
	}
	for _, p := range connectedRegistries(f.n.Host()) {
		add(p)
	}
	f.mu.Lock()
	disc := f.disc
	f.mu.Unlock()
	if disc != nil {
		for _, p := range disc.Peers() {
			add(p.ID)
		}
	}
	slices.SortFunc(known, func(a, b peer.ID) int {
		sa, _ := f.n.RTT().Get(a)
		sb, _ := f.n.RTT().Get(b)
		return cmp.Compare(sa.Smoothed, sb.Smoothed)
	})
	return append(known, unknown...)
}

func (f *nodeFinder) wait(ctx context.Context) error {
	if len(f.candidates()) > 0 {
		return nil
	}
	// Identify may still be running on the connections we have (a busy
	// machine takes seconds): let it finish before sweeping the DHT.
	if f.identified(ctx) && len(f.candidates()) > 0 {
		return nil
	}
	f.discovery().Refresh()
	// Identify may still be running on a fresh bootstrap connection: poll
	// both sources until one yields.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ErrNoRegistry
		case <-tick.C:
			if len(f.candidates()) > 0 {
				return nil
			}
		}
	}
}

// identified waits (up to 5s, or ctx) until identify has run on every
// connection the node has, so that connected registries are known. It
// reports false when it gave up.
func (f *nodeFinder) identified(ctx context.Context) bool {
	ids, ok := f.n.Host().(interface{ IDService() identify.IDService })
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, c := range f.n.Host().Network().Conns() {
		select {
		case <-ids.IDService().IdentifyWait(c):
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (f *nodeFinder) close() {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.disc != nil {
		f.disc.Close()
	}
}

// retryable reports whether another registry might answer where one
// failed: transport failures and unavailability, not refusals.
func retryable(err error) bool {
	switch wire.CodeOf(err) {
	case "", wire.CodeUnavailable, wire.CodeTimeout, wire.CodeInternal:
		return true
	}
	return false
}

// unreachableWait bounds looking for a registry once one has answered
// (FindTimeout is for a node just started, still joining), and each
// attempt at one while none has answered lately: a caller with nothing
// cached gets its answer ("no registry") within about a second instead
// of the full FindTimeout, and the first call after the registry is back
// reaches it.
const unreachableWait = time.Second

// call sends req to the nearest registry, failing over as described on
// Client.
func (c *Client) call(ctx context.Context, req Request) (*Response, error) {
	resp, err := c.callOnce(ctx, req)
	if ctx.Err() == nil {
		c.reach.observe(err)
	}
	return resp, err
}

func (c *Client) callOnce(ctx context.Context, req Request) (*Response, error) {
	find, timeout := c.opts.FindTimeout, c.opts.Timeout
	if c.reach.impatient() {
		find = min(find, unreachableWait)
	}
	if ok, _ := c.reach.state(); !ok {
		timeout = min(timeout, unreachableWait)
	}
	wctx, cancel := context.WithTimeout(ctx, find)
	err := c.find.wait(wctx)
	cancel()
	if err != nil {
		return nil, err
	}
	cands := c.find.candidates()
	var errs []error
	for _, p := range cands[:min(len(cands), c.opts.Attempts)] {
		var resp Response
		err := wire.Call(ctx, c.host, p, Protocol, req, &resp, wire.CallOptions{Timeout: timeout, MaxResponse: 16 << 20})
		if err == nil {
			return &resp, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		c.opts.Logger.Debug("registry failed; trying the next", "op", req.Op, "registry", p, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", p.ShortString(), err))
	}
	return nil, fmt.Errorf("%w: %w", ErrNoRegistry, errors.Join(errs...))
}

// AddService registers (or replaces) a service definition and returns the
// registry's message.
func (c *Client) AddService(ctx context.Context, name string, info ServiceInfo) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if err := info.Validate(); err != nil {
		return "", err
	}
	resp, err := c.call(ctx, Request{Op: OpAdd, Name: name, Info: &info})
	if err != nil {
		return "", fmt.Errorf("add service %s: %w", name, err)
	}
	return resp.Message, nil
}

// GetService reads a service definition.
func (c *Client) GetService(ctx context.Context, name string) (ServiceInfo, error) {
	resp, err := c.call(ctx, Request{Op: OpGet, Name: name})
	if err != nil {
		return ServiceInfo{}, fmt.Errorf("get service %s: %w", name, err)
	}
	if resp.Info == nil {
		return ServiceInfo{}, fmt.Errorf("get service %s: empty answer", name)
	}
	return *resp.Info, nil
}

// ListServices reads every service definition, by name.
func (c *Client) ListServices(ctx context.Context) (map[string]ServiceInfo, error) {
	resp, err := c.call(ctx, Request{Op: OpList})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	if resp.Services == nil {
		resp.Services = map[string]ServiceInfo{}
	}
	return resp.Services, nil
}

// DeleteService removes a service definition.
func (c *Client) DeleteService(ctx context.Context, name string) (string, error) {
	resp, err := c.call(ctx, Request{Op: OpDelete, Name: name})
	if err != nil {
		return "", fmt.Errorf("delete service %s: %w", name, err)
	}
	return resp.Message, nil
}

// Members lists the registry cluster's members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	resp, err := c.call(ctx, Request{Op: OpMembers})
	if err != nil {
		return nil, fmt.Errorf("list registry members: %w", err)
	}
	return resp.Members, nil
}

// PutNode publishes this node's record under a lease of ttl seconds; call
// it again well within ttl to keep the record. When the previous lease had
// expired (a registry outage, a long pause), leaseGranted is true: the
// node's instance records went with it and must be published again.
func (c *Client) PutNode(ctx context.Context, n Node, ttl int) (leaseGranted bool, err error) {
	resp, err := c.call(ctx, Request{Op: OpNodePut, Node: &n, TTL: ttl})
	if err != nil {
		return false, fmt.Errorf("publish node record: %w", err)
	}
	return resp.LeaseGranted, nil
}

// DeleteNode removes this node's record and its instances' records.
func (c *Client) DeleteNode(ctx context.Context) error {
	if _, err := c.call(ctx, Request{Op: OpNodeDelete}); err != nil {
		return fmt.Errorf("remove node record: %w", err)
	}
	return nil
}

// ListNodes reads every live node record.
func (c *Client) ListNodes(ctx context.Context) ([]Node, error) {
	resp, err := c.call(ctx, Request{Op: OpNodeList})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return resp.Nodes, nil
}

// ListNodesBrief reads every live node record without what the nodes
// measure and hold (Node.Brief): for a caller that needs to know which
// allocators there are and where, such as an allocator measuring its RTTs
// to the others. A registry older than Brief answers whole records.
func (c *Client) ListNodesBrief(ctx context.Context) ([]Node, error) {
	resp, err := c.call(ctx, Request{Op: OpNodeList, Brief: true})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return resp.Nodes, nil
}

// PutInstance publishes an instance record (of this node).
func (c *Client) PutInstance(ctx context.Context, inst Instance) error {
	if _, err := c.call(ctx, Request{Op: OpInstancePut, Instance: &inst}); err != nil {
		return fmt.Errorf("publish instance %s: %w", inst.ID, err)
	}
	return nil
}

// DeleteInstance removes an instance record.
func (c *Client) DeleteInstance(ctx context.Context, service, id string) error {
	if _, err := c.call(ctx, Request{Op: OpInstanceDelete, Name: service, ID: id}); err != nil {
		return fmt.Errorf("remove instance %s: %w", id, err)
	}
	return nil
}

// ListInstances reads the instance records of service ("" for all).
func (c *Client) ListInstances(ctx context.Context, service string) ([]Instance, error) {
	resp, err := c.call(ctx, Request{Op: OpInstanceList, Name: service})
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	return resp.Instances, nil
}
