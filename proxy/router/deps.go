package router

import (
	"context"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/registry"
)

// Registry is what the router reads of the registry: a service's
// definition and a live view of its instances. NodeDeps gives a
// *registry.Client as one; a cache that keeps answering from the last
// known good state while the registry cannot be reached can sit in front
// of it, as long as it keeps this contract.
//
// Methods are called concurrently.
type Registry interface {
	// GetService returns service's definition. An error wrapping
	// registry.ErrNotFound or registry.ErrInvalid means there is no such
	// service; any other error means the registry could not be asked. It
	// must return once ctx ends.
	GetService(ctx context.Context, service string) (registry.ServiceInfo, error)
	// WatchInstances starts a live view of service's instance records. It
	// returns at once; the router closes the watch when it is done.
	WatchInstances(service string) InstanceWatch
}

// InstanceWatch is a live view of one service's instance records.
// Methods are called concurrently, Close once.
type InstanceWatch interface {
	// Instances returns the current records.
	Instances() []registry.Instance
	// Changed returns a channel closed at the next change of Instances.
	// The watch closes it; the router only receives from it.
	Changed() <-chan struct{}
	// Route returns the service's route: which versions serve, and the
	// definition on-demand instances start from (registry.Route; Version
	// 0: every version serves). Changes of it close Changed too.
	Route() registry.Route
	// Wait blocks until the first snapshot is in or ctx ends (then it
	// returns an error).
	Wait(ctx context.Context) error
	// Close stops the watch; Changed may then never be closed again.
	Close()
}

// Placer starts an instance of a service near this proxy and returns it
// once it runs (see deploy.Placer.Place). It must return once ctx ends.
type Placer interface {
	Place(ctx context.Context, service string, info *registry.ServiceInfo, opts deploy.PlaceOptions) (*deploy.Response, error)
}

// Prober measures RTTs to instances and remembers them.
// Methods are called concurrently.
type Prober interface {
	// Measure pings every peer in parallel (Addrs are where to find it)
	// and returns when each has answered or failed, or ctx has ended.
	Measure(ctx context.Context, peers []peer.AddrInfo)
	// RTT returns the smoothed RTT to p, and false while none was measured.
	RTT(p peer.ID) (time.Duration, bool)
}

// Discoverer finds peers advertising a rendezvous on the DHT: the
// service-mode proxies run by hand, which no registry record names.
type Discoverer interface {
	// Discover starts a renewing lookup of ns; the router closes it.
	Discover(ns string) PeerSet
}

// PeerSet is the current outcome of a Discover. Close is called once.
type PeerSet interface {
	Peers() []p2p.Peer
	Close()
}

// Deps are what a Router works with. Every field is required.
type Deps struct {
	Registry   Registry
	Placer     Placer
	Prober     Prober
	Discoverer Discoverer
}

// NodeDeps returns the Deps of a proxy on node n: the registry read through
// reg, RTTs measured and the DHT looked up from n, and instances asked for
// through a deploy.Placer (logging to log).
func NodeDeps(n *p2p.Node, reg *registry.Client, log *slog.Logger) Deps {
	return Deps{
		Registry:   registryClient{reg},
		Placer:     deploy.NewPlacer(n, reg, log),
		Prober:     nodeNet{n},
		Discoverer: nodeNet{n},
	}
}

// The production implementations.
var (
	_ InstanceWatch = (*registry.InstanceWatch)(nil)
	_ Registry      = registryClient{}
	_ Placer        = (*deploy.Placer)(nil)
	_ Prober        = nodeNet{}
	_ Discoverer    = nodeNet{}
	_ PeerSet       = (*p2p.Discovery)(nil)
)

// registryClient is a *registry.Client as a Registry.
type registryClient struct{ *registry.Client }

func (c registryClient) WatchInstances(service string) InstanceWatch {
	return c.Client.WatchInstances(service)
}

// nodeNet measures RTTs and looks the DHT up from a p2p.Node.
type nodeNet struct{ n *p2p.Node }

func (nn nodeNet) Measure(ctx context.Context, peers []peer.AddrInfo) {
	ids := make([]peer.ID, len(peers))
	for i, p := range peers {
		ids[i] = p.ID
		nn.n.Host().Peerstore().AddAddrs(p.ID, p.Addrs, peerstore.RecentlyConnectedAddrTTL)
	}
	nn.n.RTT().Measure(ctx, ids)
}

func (nn nodeNet) RTT(p peer.ID) (time.Duration, bool) {
	s, ok := nn.n.RTT().Get(p)
	return s.Smoothed, ok
}

func (nn nodeNet) Discover(ns string) PeerSet { return nn.n.Discover(ns) }
