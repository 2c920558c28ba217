// Package p2p builds the one libp2p host every Physarum binary runs: TCP
// only, inside the private network of a PSK, with a server-mode kad-dht
// under a private protocol prefix. A Node keeps its bootstrap connections
// alive (reconnecting with capped backoff), renews its rendezvous
// advertisements, runs renewing lookups, and measures RTT to peers.
package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/physarum-p2p/physarum/common/rtt"
)

// ErrNoBootstrap means none of the bootstrap peers could be reached. With a
// wrong PSK the handshake fails in ways that look like network errors, so
// the message names both causes.
var ErrNoBootstrap = errors.New("no bootstrap reachable; check the PSK and address")

// Node is a running libp2p host with its DHT and background loops.
// Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	host    host.Host
	dht     *dht.IpfsDHT
	disc    *drouting.RoutingDiscovery
	rtt     *rtt.Tracker
	metrics *nodeMetrics

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	boot *bootstrapper

	mu         sync.Mutex
	advertised map[string]*advert // by namespace
	closed     bool
}

// New starts a node. It returns once the host listens; joining the network
// goes on in the background (see Bootstrapped).
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	h, err := newHost(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	mode := dht.ModeServer
	if cfg.DHTClient {
		mode = dht.ModeClient
	}
	kad, err := dht.New(h,
		dht.Mode(mode),
		dht.ProtocolPrefix(cfg.ProtocolPrefix),
		dht.ProviderManagerOpts(records.ProvideValidity(cfg.Timing.ProvideValidity)),
	)
	if err != nil {
		cancel()
		_ = h.Close()
		return nil, fmt.Errorf("start DHT: %w", err)
	}
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger,
		host:       h,
		dht:        kad,
		disc:       drouting.NewRoutingDiscovery(kad),
		ctx:        ctx,
		cancel:     cancel,
		advertised: make(map[string]*advert),
	}
	opts := cfg.RTT
	if cfg.Registerer != nil {
		n.metrics = newNodeMetrics(cfg.Registerer, h)
		opts.Observe = n.metrics.rtt.Observe
	}
	n.rtt = rtt.NewTracker(h, opts)
	n.boot = newBootstrapper(n)
	n.goLoop(n.boot.run)
	return n, nil
}

// goLoop runs fn in a goroutine owned by the node: Close waits for it.
func (n *Node) goLoop(fn func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn(n.ctx)
	}()
}

// Config is the node's configuration (with defaults filled in).
func (n *Node) Config() Config { return n.cfg }

// Host is the node's libp2p host.
func (n *Node) Host() host.Host { return n.host }

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// DHT is the node's DHT.
func (n *Node) DHT() *dht.IpfsDHT { return n.dht }

// RTT is the node's latency tracker.
func (n *Node) RTT() *rtt.Tracker { return n.rtt }

// Logger is the node's logger.
func (n *Node) Logger() *slog.Logger { return n.log }

// Addrs returns the node's full dialable addresses, /p2p/<id> included.
// Unspecified listen addresses (0.0.0.0) are expanded to the interfaces'.
func (n *Node) Addrs() []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()})
	if err != nil { // only when the ID is empty, which a running host never has
		return nil
	}
	return addrs
}

// AddrInfo is the node's ID and addresses, for peers to connect to.
func (n *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}
}

// Bootstrapped waits until the first round of connecting to the bootstrap
// peers is over. It returns nil when at least one was reached (or none was
// configured), and an error wrapping ErrNoBootstrap otherwise. The node
// keeps trying in the background either way.
func (n *Node) Bootstrapped(ctx context.Context) error {
	return n.boot.wait(ctx)
}

// Joined waits until a bootstrap peer has been reached (at once when none
// is configured), however many rounds that takes, or until ctx ends.
func (n *Node) Joined(ctx context.Context) error {
	select {
	case <-n.boot.joined:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("join the network: %w", ctx.Err())
	}
}

// Close stops the loops, the DHT and the host, and waits for every
// goroutine the node started. It is idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()

	n.cancel()
	n.wg.Wait()
	err := errors.Join(n.dht.Close(), n.host.Close())
	if n.metrics != nil {
		n.metrics.unregister()
	}
	return err
}

// PSK is the private network's key (for components, such as the
// registry's etcd TLS, that derive their own secrets from it).
func (n *Node) PSK() []byte { return n.cfg.PSK }

// ShortID abbreviates a peer ID for messages: its first 8 and last 6
// characters.
func ShortID(id peer.ID) string {
	s := id.String()
	if len(s) <= 16 {
		return s
	}
	return s[:8] + "…" + s[len(s)-6:]
}

// dropLoopbackWhenRoutable keeps loopback addresses out of what a node
// tells its peers when it has others: from another machine (or container)
// 127.0.0.1 is the dialler itself. A node on loopback only keeps them.
func dropLoopbackWhenRoutable(addrs []ma.Multiaddr) []ma.Multiaddr {
	var routable []ma.Multiaddr
	for _, a := range addrs {
		if !manet.IsIPLoopback(a) {
			routable = append(routable, a)
		}
	}
	if len(routable) == 0 {
		return addrs
	}
	return routable
}
