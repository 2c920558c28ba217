package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/physarum-p2p/physarum/common/netdelay"
)

// newHost builds the libp2p host from go-libp2p's config package, not
// through libp2p.New: the libp2p package's defaults name QUIC, WebTransport
// and WebRTC, which links them (pion and quic-go) into every binary that
// imports it, though a network under a PSK can use none of them. Without
// them the proxy binary is 4.9 MB smaller and its idle RSS about 3 MB lower
// (BENCHMARKS.md, "A smaller binary"). The fields set here are those the
// libp2p options we would pass set, and libp2p.New's fallback defaults for
// the rest (peerstore, resource manager, metrics, black hole detection).
func newHost(cfg Config) (host.Host, error) {
	hc, err := hostConfig(cfg)
	if err != nil {
		return nil, err
	}
	h, err := hc.NewNode()
	if err != nil {
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	return h, nil
}

func hostConfig(cfg Config) (*config.Config, error) {
	cm, err := connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh)
	if err != nil {
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	ps, err := pstoremem.NewPeerstore()
	if err != nil {
		_ = cm.Close()
		return nil, fmt.Errorf("peerstore: %w", err)
	}
	rm, err := resourceManager()
	if err != nil {
		_ = cm.Close()
		_ = ps.Close()
		return nil, err
	}
	var tpt any = tcp.NewTCPTransport
	if cfg.Delay != nil {
		tpt = netdelay.Constructor(cfg.Delay)
	}
	return &config.Config{
		PeerKey:     cfg.Identity,
		PSK:         cfg.PSK,
		ListenAddrs: cfg.ListenAddrs,
		Transports:  []fx.Option{provideTransport(tpt)},
		// TLS first: a little faster than Noise here (BENCHMARKS.md,
		// "Closing the distance"). Noise second, so that nodes of earlier
		// versions, which offer only Noise, still connect both ways.
		SecurityTransports: []config.Security{
			{ID: tls.ID, Constructor: tls.New},
			{ID: noise.ID, Constructor: noise.New},
		},
		Muxers:          []tptu.StreamMuxer{{ID: yamux.ID, Muxer: yamux.DefaultTransport}},
		ConnManager:     cm,
		Peerstore:       ps,
		ResourceManager: rm,
		UserAgent:       cfg.UserAgent,
		RelayCustom:     true, // and Relay false: no circuit relay
		DialTimeout:     cfg.Timing.DialTimeout,
		AddrsFactory:    dropLoopbackWhenRoutable,
		// libp2p_* metrics on the default registry, which every daemon's
		// /metrics serves, as libp2p.New does.
		PrometheusRegisterer:              prometheus.DefaultRegisterer,
		UDPBlackHoleSuccessCounter:        &swarm.BlackHoleSuccessCounter{N: 100, MinSuccesses: 5, Name: "UDP"},
		CustomUDPBlackHoleSuccessCounter:  true,
		IPv6BlackHoleSuccessCounter:       &swarm.BlackHoleSuccessCounter{N: 100, MinSuccesses: 5, Name: "IPv6"},
		CustomIPv6BlackHoleSuccessCounter: true,
	}, nil
}

// provideTransport is what libp2p.Transport does for a constructor without
// options: fx builds the transport from what the constructor asks for (the
// upgrader, the resource manager).
func provideTransport(constructor any) fx.Option {
	return fx.Provide(fx.Annotate(constructor,
		fx.As(new(transport.Transport)),
		fx.ResultTags(`group:"transport"`)))
}

// resourceManager is libp2p.New's default: the default limits scaled to the
// machine, with the service limits libp2p sets for identify and ping (the
// only libp2p services a Physarum node runs; relay, AutoNAT and hole
// punching are off).
func resourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	limits.AddServiceLimit(identify.ServiceName,
		rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20})
	limits.AddServicePeerLimit(identify.ServiceName,
		rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 1 << 20},
		rcmgr.BaseLimitIncrease{})
	for _, id := range []protocol.ID{identify.ID, identify.IDPush} {
		limits.AddProtocolLimit(id,
			rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20},
			rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20})
		limits.AddProtocolPeerLimit(id,
			rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 32 * (256<<20 + 16<<10)},
			rcmgr.BaseLimitIncrease{})
	}
	pingLimit := rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 64, Memory: 4 << 20}
	pingIncrease := rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 64, Memory: 4 << 20}
	pingPeer := rcmgr.BaseLimit{StreamsInbound: 2, StreamsOutbound: 3, Streams: 4, Memory: 32 * (256<<20 + 16<<10)}
	limits.AddServiceLimit(ping.ServiceName, pingLimit, pingIncrease)
	limits.AddProtocolLimit(ping.ID, pingLimit, pingIncrease)
	limits.AddServicePeerLimit(ping.ServiceName, pingPeer, rcmgr.BaseLimitIncrease{})
	limits.AddProtocolPeerLimit(ping.ID, pingPeer, rcmgr.BaseLimitIncrease{})
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	return rm, nil
}
