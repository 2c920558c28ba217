package registry

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/keys"
	"github.com/physarum-p2p/physarum/common/p2p"
)

// The two variants of each operation, as in PhysarumSM: the plain one
// starts a short-lived node (new identity) from bootstrap addresses and the
// network's PSK; the ...WithHostRouting one uses the caller's host and its
// routing discovery. Both give up after DefaultCallTimeout.

// DefaultCallTimeout bounds one call of the package-level functions.
const DefaultCallTimeout = 30 * time.Second

// AddService adds {serviceName, info} to the registry.
func AddService(bootstraps []ma.Multiaddr, psk pnet.PSK, serviceName string, info ServiceInfo) (string, error) {
	var out string
	err := withTempClient(bootstraps, psk, func(ctx context.Context, c *Client) (err error) {
		out, err = c.AddService(ctx, serviceName, info)
		return err
	})
	return out, err
}

// AddServiceWithHostRouting is AddService from an existing host.
func AddServiceWithHostRouting(ctx context.Context, h host.Host, rd *drouting.RoutingDiscovery, serviceName string, info ServiceInfo) (string, error) {
	c := NewRoutingClient(h, rd, Options{})
	defer c.Close()
	return c.AddService(ctx, serviceName, info)
}

// GetService reads the definition of the service named query.
func GetService(bootstraps []ma.Multiaddr, psk pnet.PSK, query string) (ServiceInfo, error) {
	var out ServiceInfo
	err := withTempClient(bootstraps, psk, func(ctx context.Context, c *Client) (err error) {
		out, err = c.GetService(ctx, query)
		return err
	})
	return out, err
}

// GetServiceWithHostRouting is GetService from an existing host.
func GetServiceWithHostRouting(ctx context.Context, h host.Host, rd *drouting.RoutingDiscovery, query string) (ServiceInfo, error) {
	c := NewRoutingClient(h, rd, Options{})
	defer c.Close()
	return c.GetService(ctx, query)
}

// ListServices lists every service, by name. (PhysarumSM spelled it
// ListServicees.)
func ListServices(bootstraps []ma.Multiaddr, psk pnet.PSK) (map[string]ServiceInfo, error) {
	var out map[string]ServiceInfo
	err := withTempClient(bootstraps, psk, func(ctx context.Context, c *Client) (err error) {
		out, err = c.ListServices(ctx)
		return err
	})
	return out, err
}

// ListServicesWithHostRouting is ListServices from an existing host.
func ListServicesWithHostRouting(ctx context.Context, h host.Host, rd *drouting.RoutingDiscovery) (map[string]ServiceInfo, error) {
	c := NewRoutingClient(h, rd, Options{})
	defer c.Close()
	return c.ListServices(ctx)
}

// DeleteService removes the service named serviceName.
func DeleteService(bootstraps []ma.Multiaddr, psk pnet.PSK, serviceName string) (string, error) {
	var out string
	err := withTempClient(bootstraps, psk, func(ctx context.Context, c *Client) (err error) {
		out, err = c.DeleteService(ctx, serviceName)
		return err
	})
	return out, err
}

// DeleteServiceWithHostRouting is DeleteService from an existing host.
func DeleteServiceWithHostRouting(ctx context.Context, h host.Host, rd *drouting.RoutingDiscovery, serviceName string) (string, error) {
	c := NewRoutingClient(h, rd, Options{})
	defer c.Close()
	return c.DeleteService(ctx, serviceName)
}

// withTempClient runs fn with a Client on a short-lived node.
func withTempClient(bootstraps []ma.Multiaddr, psk pnet.PSK, fn func(context.Context, *Client) error) error {
	if len(bootstraps) == 0 {
		return fmt.Errorf("no bootstrap address: the registry is found through the network")
	}
	infos, err := peer.AddrInfosFromP2pAddrs(bootstraps...)
	if err != nil {
		return fmt.Errorf("bootstrap addresses: %w", err)
	}
	id, err := keys.Generate("Ed25519", 0)
	if err != nil {
		return err
	}
	n, err := p2p.New(p2p.Config{
		PSK: psk, Identity: id, Bootstraps: infos,
		ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
	})
	if err != nil {
		return err
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCallTimeout)
	defer cancel()
	if err := n.Bootstrapped(ctx); err != nil {
		return err
	}
	c := NewClient(n, Options{})
	defer c.Close()
	return fn(ctx, c)
}

// NewRoutingClient returns a Client on an existing host that finds
// registries among its connected peers and through rd.
func NewRoutingClient(h host.Host, rd *drouting.RoutingDiscovery, opts Options) *Client {
	opts = opts.withDefaults()
	return &Client{host: h, find: &routingFinder{h: h, rd: rd}, opts: opts, reach: newReachability(opts.Logger)}
}

type routingFinder struct {
	h  host.Host
	rd *drouting.RoutingDiscovery
}

func (f *routingFinder) candidates() []peer.ID { return connectedRegistries(f.h) }

// wait looks the rendezvous up once, dials what it finds, and checks which
// peers speak the protocol.
func (f *routingFinder) wait(ctx context.Context) error {
	if len(f.candidates()) > 0 {
		return nil
	}
	if f.rd == nil {
		return ErrNoRegistry
	}
	ch, err := f.rd.FindPeers(ctx, Rendezvous)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoRegistry, err)
	}
	for ai := range ch {
		if ai.ID == f.h.ID() {
			continue
		}
		if err := f.h.Connect(ctx, ai); err == nil {
			f.h.Peerstore().AddProtocols(ai.ID, Protocol) // it advertised as a registry
		}
	}
	if len(f.candidates()) == 0 {
		return ErrNoRegistry
	}
	return nil
}

func (f *routingFinder) close() {}
