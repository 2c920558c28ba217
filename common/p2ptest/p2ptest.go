// Package p2ptest starts real Physarum nodes on loopback inside a test and
// tears them down when it ends. Every multi-node test builds on it.
//
// Nodes use p2p.FastTiming so that discovery converges in well under a
// second. Set PHYSARUM_TEST_VERBOSE=1 to see the nodes' logs in the test
// output.
package p2ptest

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/keys"
	"github.com/physarum-p2p/physarum/common/netdelay"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/psk"
	"github.com/physarum-p2p/physarum/common/rtt"
)

// DefaultPassphrase is the passphrase of test networks.
const DefaultPassphrase = "physarum-test-network"

// Spec describes a node to start. The zero value is a node on a free
// loopback port with a new key, in the DefaultPassphrase network.
type Spec struct {
	Passphrase string
	Key        crypto.PrivKey
	Listen     ma.Multiaddr
	Bootstraps []peer.AddrInfo
	Delay      *netdelay.Delay
	Timing     p2p.Timing
	RTT        rtt.Options
	// Configure, when set, may change the p2p.Config last.
	Configure func(*p2p.Config)
}

// Node is a started test node. Its Spec holds the actual listen address,
// so Restart brings the same peer back on the same port.
type Node struct {
	*p2p.Node
	Spec Spec
}

// Start starts a node and closes it when the test ends.
func Start(t testing.TB, spec Spec) *Node {
	t.Helper()
	if spec.Passphrase == "" {
		spec.Passphrase = DefaultPassphrase
	}
	if spec.Key == nil {
		k, err := keys.Generate("Ed25519", 0)
		if err != nil {
			t.Fatal(err)
		}
		spec.Key = k
	}
	if len(spec.Listen) == 0 {
		spec.Listen = ma.StringCast("/ip4/127.0.0.1/tcp/0")
	}
	if spec.Timing == (p2p.Timing{}) {
		spec.Timing = p2p.FastTiming()
	}
	key, err := psk.Derive(spec.Passphrase)
	if err != nil {
		t.Fatal(err)
	}
	cfg := p2p.Config{
		PSK:         key,
		Identity:    spec.Key,
		ListenAddrs: []ma.Multiaddr{spec.Listen},
		Bootstraps:  spec.Bootstraps,
		Timing:      spec.Timing,
		RTT:         spec.RTT,
		Delay:       spec.Delay,
		Logger:      Logger(t),
	}
	if spec.Configure != nil {
		spec.Configure(&cfg)
	}
	n, err := p2p.New(cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	spec.Listen = boundAddr(t, n)
	return &Node{Node: n, Spec: spec}
}

// boundAddr returns the loopback TCP address the node actually listens on.
func boundAddr(t testing.TB, n *p2p.Node) ma.Multiaddr {
	t.Helper()
	for _, a := range n.Host().Network().ListenAddresses() {
		if manet.IsIPLoopback(a) {
			return a
		}
	}
	t.Fatalf("node %s listens on no loopback address: %v", n.ID(), n.Host().Network().ListenAddresses())
	return nil
}

// Restart closes the node and starts it again with the same key, address
// and bootstraps, as a process restart would.
func (n *Node) Restart(t testing.TB) *Node {
	t.Helper()
	if err := n.Close(); err != nil {
		t.Logf("close before restart: %v", err)
	}
	return Start(t, n.Spec)
}

// Network starts count nodes: node 0 first, then the rest bootstrapped from
// it, and waits until each has joined. configure, when set, adjusts node
// i's Spec before it starts.
func Network(t testing.TB, count int, configure func(i int, s *Spec)) []*Node {
	t.Helper()
	nodes := make([]*Node, 0, count)
	for i := range count {
		var s Spec
		if i > 0 {
			s.Bootstraps = []peer.AddrInfo{nodes[0].AddrInfo()}
		}
		if configure != nil {
			configure(i, &s)
		}
		nodes = append(nodes, Start(t, s))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.Bootstrapped(ctx); err != nil {
			t.Fatalf("node %s: %v", n.ID(), err)
		}
	}
	return nodes
}

// Logger returns a logger that writes to the test log when
// PHYSARUM_TEST_VERBOSE=1, and discards otherwise.
func Logger(t testing.TB) *slog.Logger {
	t.Helper()
	if os.Getenv("PHYSARUM_TEST_VERBOSE") != "1" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// IgnoreLeaks lists goroutines that libp2p and its dependencies start once
// per process and never stop; goleak.VerifyTestMain should not report them.
func IgnoreLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	}
}

// ID returns a fixed peer ID for tests that need peers without hosts: the
// same i always gives the same ID, and different i different IDs.
func ID(t testing.TB, i int) peer.ID {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = byte(i)
	key, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
