package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/physarum-p2p/physarum/common/netdelay"
	"github.com/physarum-p2p/physarum/common/psk"
	"github.com/physarum-p2p/physarum/common/rtt"
)

// DefaultProtocolPrefix keeps Physarum's DHT apart from the public IPFS DHT
// (whose prefix is /ipfs) even if a PSK were ever shared with it.
const DefaultProtocolPrefix protocol.ID = "/physarum"

// Config configures a Node. Flags and env fill it (see common/nodeflags);
// Validate runs before anything starts.
type Config struct {
	// PSK is the private network's key (required; see common/psk).
	PSK pnet.PSK
	// Identity is the node's private key (required; see common/keys).
	Identity crypto.PrivKey
	// ListenAddrs are TCP multiaddrs to listen on (default /ip4/0.0.0.0/tcp/0).
	ListenAddrs []ma.Multiaddr
	// Bootstraps are peers to join the network through. None means this node
	// starts a network.
	Bootstraps []peer.AddrInfo
	// ProtocolPrefix namespaces the DHT (default DefaultProtocolPrefix).
	ProtocolPrefix protocol.ID
	// DHTClient runs the DHT as a client: the node looks up and advertises
	// through the servers, but serves no queries and stays out of others'
	// routing tables. Registries serve the DHT; allocators, proxies and
	// CLIs are clients, so that a hundred of them do not weave a full mesh
	// of connections among themselves (each server lookup dials the k
	// closest servers). A client's bootstrap peers must include a server.
	DHTClient bool
	// Timing holds the loops' periods; zero fields take DefaultTiming's.
	Timing Timing
	// RTT tunes latency measurement.
	RTT rtt.Options
	// Delay, when set, adds user-space latency to every connection
	// (tests and demos only; see common/netdelay).
	Delay *netdelay.Delay
	// ConnLow and ConnHigh are the connection manager's watermarks
	// (defaults 64 and 192; a registry, which every node talks to, sets
	// more).
	ConnLow, ConnHigh int
	// Logger receives the node's events (default: discard).
	Logger *slog.Logger
	// Registerer receives the node's metrics; nil disables them.
	Registerer prometheus.Registerer
	// UserAgent names the binary in identify (default "physarum").
	UserAgent string
}

// Timing holds the periods of the node's background loops.
type Timing struct {
	// DialTimeout bounds one connection attempt (default 5s).
	DialTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// reach a lost bootstrap peer (defaults 500ms and 30s).
	ReconnectMin, ReconnectMax time.Duration
	// ProvideValidity is how long other nodes keep our advertisements
	// (default 10m): a dead node's records go away after it.
	ProvideValidity time.Duration
	// AdvertiseEvery is how often advertisements are renewed
	// (default ProvideValidity/3).
	AdvertiseEvery time.Duration
	// AdvertiseJitter bounds the random pause before a first
	// advertisement (default 10s).
	AdvertiseJitter time.Duration
	// FindEvery is how often a Discovery looks up its rendezvous again
	// (default 30s).
	FindEvery time.Duration
	// FindTimeout bounds one lookup (default 10s).
	FindTimeout time.Duration
	// RefreshJitter bounds the random pause before a node's first DHT
	// routing table refresh (default 30s); RefreshEvery is the period
	// after it (default 10m).
	RefreshJitter, RefreshEvery time.Duration
	// RoutingTableWait is how often an advertise loop checks whether the
	// routing table has peers yet (default 500ms). Advertising into an empty
	// table fails, so loops wait for a first peer.
	RoutingTableWait time.Duration
}

// DefaultTiming is what a production node uses.
func DefaultTiming() Timing {
	return Timing{
		DialTimeout:      5 * time.Second,
		ReconnectMin:     500 * time.Millisecond,
		ReconnectMax:     30 * time.Second,
		ProvideValidity:  10 * time.Minute,
		FindEvery:        30 * time.Second,
		FindTimeout:      10 * time.Second,
		RoutingTableWait: 500 * time.Millisecond,
		RefreshJitter:    30 * time.Second,
		RefreshEvery:     10 * time.Minute,
		AdvertiseJitter:  10 * time.Second,
	}
}

// FastTiming shortens every loop, for tests and local demos where nodes
// come and go within seconds.
func FastTiming() Timing {
	return Timing{
		DialTimeout:      2 * time.Second,
		ReconnectMin:     100 * time.Millisecond,
		ReconnectMax:     time.Second,
		ProvideValidity:  time.Minute,
		AdvertiseEvery:   5 * time.Second,
		FindEvery:        time.Second,
		FindTimeout:      5 * time.Second,
		RoutingTableWait: 50 * time.Millisecond,
		RefreshJitter:    2 * time.Second,
		RefreshEvery:     time.Minute,
		AdvertiseJitter:  200 * time.Millisecond,
	}
}

func (t Timing) withDefaults() Timing {
	d := DefaultTiming()
	pick := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&t.DialTimeout, d.DialTimeout)
	pick(&t.ReconnectMin, d.ReconnectMin)
	pick(&t.ReconnectMax, d.ReconnectMax)
	pick(&t.ProvideValidity, d.ProvideValidity)
	pick(&t.AdvertiseEvery, t.ProvideValidity/3)
	pick(&t.FindEvery, d.FindEvery)
	pick(&t.FindTimeout, d.FindTimeout)
	pick(&t.RoutingTableWait, d.RoutingTableWait)
	pick(&t.RefreshJitter, d.RefreshJitter)
	pick(&t.RefreshEvery, d.RefreshEvery)
	pick(&t.AdvertiseJitter, d.AdvertiseJitter)
	return t
}

// Validate reports the first thing wrong with c.
func (c *Config) Validate() error {
	if len(c.PSK) == 0 {
		return psk.ErrMissing
	}
	if len(c.PSK) != psk.Size {
		return fmt.Errorf("PSK is %d bytes, want %d", len(c.PSK), psk.Size)
	}
	if c.Identity == nil {
		return errors.New("no identity: give -keyfile or -ephemeral")
	}
	for _, a := range c.ListenAddrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err != nil {
			return fmt.Errorf("listen address %s is not TCP (QUIC and WebTransport cannot carry a PSK)", a)
		}
	}
	if c.ConnLow < 0 || c.ConnHigh < 0 || (c.ConnHigh > 0 && c.ConnLow > c.ConnHigh) {
		return fmt.Errorf("connection watermarks low=%d high=%d are invalid", c.ConnLow, c.ConnHigh)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/0.0.0.0/tcp/0")}
	}
	if c.ProtocolPrefix == "" {
		c.ProtocolPrefix = DefaultProtocolPrefix
	}
	if c.ConnLow == 0 {
		c.ConnLow = 64
	}
	if c.ConnHigh == 0 {
		c.ConnHigh = 192
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.UserAgent == "" {
		c.UserAgent = "physarum"
	}
	c.Timing = c.Timing.withDefaults()
	return c
}
