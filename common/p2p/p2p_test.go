package p2p_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/rtt"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, p2ptest.IgnoreLeaks()...)
}

const rendezvous = "physarum/test/rendezvous"

func TestFiveNodesFindEachOtherWithRTT(t *testing.T) {
	nodes := p2ptest.Network(t, 5, nil)
	discs := make([]*p2p.Discovery, len(nodes))
	for i, n := range nodes {
		n.Advertise(rendezvous)
		discs[i] = n.Discover(rendezvous)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i, d := range discs {
		peers, err := d.WaitFor(ctx, func(ps []p2p.Peer) bool {
			if len(ps) < len(nodes)-1 {
				return false
			}
			for _, p := range ps {
				if p.RTT <= 0 {
					return false
				}
			}
			return true
		})
		if err != nil {
			t.Fatalf("node %d sees %d peers: %v", i, len(peers), err)
		}
		for _, p := range peers {
			if p.ID == nodes[i].ID() {
				t.Fatalf("node %d found itself", i)
			}
			perf, ok := nodes[i].RTT().PerfInd(p.ID)
			if !ok || perf.RTT <= 0 {
				t.Fatalf("node %d: RTT to %s = %v (known %v), want a positive number of ms", i, p.ID, perf, ok)
			}
			// Loopback RTTs are microseconds: a value in ns or s would be off by 10^6.
			if perf.RTT > 1000 {
				t.Fatalf("node %d: RTT to %s = %v ms, implausible on loopback", i, p.ID, perf.RTT)
			}
		}
	}
	t.Logf("5 nodes found each other in %s", time.Since(start))
}

func TestWrongPSKIsRefusedWithAClearError(t *testing.T) {
	good := p2ptest.Start(t, p2ptest.Spec{})
	bad := p2ptest.Start(t, p2ptest.Spec{
		Passphrase: "some other network",
		Bootstraps: []peer.AddrInfo{good.AddrInfo()},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	err := bad.Bootstrapped(ctx)
	if !errors.Is(err, p2p.ErrNoBootstrap) {
		t.Fatalf("Bootstrapped = %v, want ErrNoBootstrap", err)
	}
	for _, want := range []string{"no bootstrap reachable", "check the PSK"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if c := good.Host().Network().Connectedness(bad.ID()); c == network.Connected {
		t.Fatalf("node with the wrong PSK is connected")
	}
}

func TestNoBootstrapsMeansANewNetwork(t *testing.T) {
	n := p2ptest.Start(t, p2ptest.Spec{})
	if err := n.Bootstrapped(t.Context()); err != nil {
		t.Fatalf("first node of a network: %v", err)
	}
	if len(n.Addrs()) == 0 || !strings.Contains(n.Addrs()[0].String(), "/p2p/"+n.ID().String()) {
		t.Fatalf("Addrs() = %v, want full /p2p/ addresses", n.Addrs())
	}
}

func TestRestartedBootstrapIsRejoinedAndRecordsRenewed(t *testing.T) {
	boot := p2ptest.Start(t, p2ptest.Spec{})
	member := p2ptest.Start(t, p2ptest.Spec{Bootstraps: []peer.AddrInfo{boot.AddrInfo()}})
	member.Advertise(rendezvous)
	eventually.Succeeds(t, 10*time.Second, func() error { return providedBy(boot, member) })

	boot = boot.Restart(t) // same key and port, empty DHT
	if err := providedBy(boot, member); err == nil {
		t.Fatal("restarted bootstrap still holds the record; the test proves nothing")
	}
	// The member reconnects and advertises again without being asked.
	eventually.Succeeds(t, 10*time.Second, func() error {
		if c := member.Host().Network().Connectedness(boot.ID()); c != network.Connected {
			return fmt.Errorf("member not reconnected (%v)", c)
		}
		return providedBy(boot, member)
	})
	// And a newcomer that knows only the bootstrap finds it.
	newcomer := p2ptest.Start(t, p2ptest.Spec{Bootstraps: []peer.AddrInfo{boot.AddrInfo()}})
	eventually.Succeeds(t, 10*time.Second, func() error {
		found, err := newcomer.FindPeers(t.Context(), rendezvous)
		if err != nil {
			return err
		}
		for _, ai := range found {
			if ai.ID == member.ID() {
				return nil
			}
		}
		return fmt.Errorf("found %v, not the member", found)
	})
}

// providedBy checks that holder's DHT stores member's record for the
// rendezvous.
func providedBy(holder, member *p2ptest.Node) error {
	provs, err := holder.DHT().ProviderStore().GetProviders(context.Background(), p2p.NamespaceKey(rendezvous))
	if err != nil {
		return err
	}
	for _, ai := range provs {
		if ai.ID == member.ID() {
			return nil
		}
	}
	return fmt.Errorf("%s holds no record of %s", holder.ID().ShortString(), member.ID().ShortString())
}

func TestDiscoveryDropsADeadPeer(t *testing.T) {
	nodes := p2ptest.Network(t, 3, nil)
	for _, n := range nodes {
		n.Advertise(rendezvous)
	}
	d := nodes[1].Discover(rendezvous)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := d.WaitFor(ctx, func(ps []p2p.Peer) bool { return len(ps) == 2 }); err != nil {
		t.Fatal(err)
	}
	dead := nodes[2].ID()
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	d.Refresh()
	if _, err := d.WaitFor(ctx, func(ps []p2p.Peer) bool {
		for _, p := range ps {
			if p.ID == dead {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
}

// TestRTTMeasurementInParallelIsBoundedAndReportsAnUnreachablePeer: a
// node measures five peers and a made-up one in one call; the five get an
// RTT, the made-up one an error, and the call returns within 2 s (each
// ping is cut at 500 ms). The made-up peer has no address to dial and
// fails at once, so no timeout is exercised here: common/rtt's
// TestMeasureTimesOutAPeerThatNeverAnswers tests that a peer that never
// answers is timed out.
func TestRTTMeasurementInParallelIsBoundedAndReportsAnUnreachablePeer(t *testing.T) {
	nodes := p2ptest.Network(t, 6, func(i int, s *p2ptest.Spec) {
		s.RTT = rtt.Options{Timeout: 500 * time.Millisecond}
	})
	var ids []peer.ID
	for _, n := range nodes[1:] {
		ids = append(ids, n.ID())
	}
	ids = append(ids, "12D3KooWNotARealPeerAtAllxxxxxxxxxxxxxxxxxxxxxxxxxxx") // no address: fails at once
	start := time.Now()
	res := nodes[0].RTT().Measure(t.Context(), ids)
	took := time.Since(start)
	for i, r := range res[:5] {
		if r.Err != nil || r.RTT <= 0 {
			t.Errorf("peer %d: rtt %v err %v", i, r.RTT, r.Err)
		}
	}
	if res[5].Err == nil {
		t.Errorf("made-up peer measured: %v", res[5])
	}
	if took > 2*time.Second {
		t.Errorf("Measure took %s", took)
	}
}

// A closed node starts no work: Discover hands back a lookup that finds
// nothing and is over, Advertise does nothing, and neither leaves a
// goroutine behind (goleak checks).
func TestAClosedNodeDiscoversAndAdvertisesNothing(t *testing.T) {
	n := p2ptest.Start(t, p2ptest.Spec{})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	d := n.Discover(rendezvous)
	n.Advertise(rendezvous)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	if peers, err := d.WaitFor(ctx, func(ps []p2p.Peer) bool { return len(ps) > 0 }); err == nil || len(peers) != 0 {
		t.Fatalf("a closed node's lookup: %v, %v", peers, err)
	}
	d.Close() // returns at once: nothing runs
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("the closed lookup took %s to give up and close", took)
	}
}

// Lookups asked for while the node closes either run and are waited for,
// or never start (-race reports a WaitGroup added to while it is waited
// on).
func TestDiscoverDuringCloseIsSafe(t *testing.T) {
	n := p2ptest.Start(t, p2ptest.Spec{})
	stop := make(chan struct{})
	done := make(chan struct{})
	var started atomic.Int64
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				n.Discover(rendezvous).Close()
				started.Add(1)
			}
		}
	}()
	eventually.True(t, 10*time.Second, "lookups under way", func() bool { return started.Load() >= 10 })
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
}

// TestSecurityTLSFirstNoiseStillAccepted checks the security transports'
// order: two nodes secure their connection with TLS, and a node of an
// earlier version, which offers only Noise, still connects to a node and
// is connected to, both ways.
func TestSecurityTLSFirstNoiseStillAccepted(t *testing.T) {
	nodes := p2ptest.Network(t, 2, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := nodes[1].Host().Connect(ctx, nodes[0].AddrInfo()); err != nil {
		t.Fatal(err)
	}
	for _, c := range nodes[1].Host().Network().ConnsToPeer(nodes[0].ID()) {
		if got := c.ConnState().Security; got != tls.ID {
			t.Fatalf("connection between two nodes secured with %q, want %q", got, tls.ID)
		}
	}

	for _, dialer := range []string{"the Noise-only node", "the node"} {
		t.Run("dialled by "+dialer, func(t *testing.T) {
			n := p2ptest.Start(t, p2ptest.Spec{})
			old, err := libp2p.New(
				libp2p.PrivateNetwork(n.PSK()),
				libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
				libp2p.Transport(tcp.NewTCPTransport),
				libp2p.Security(noise.ID, noise.New),
				libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
				libp2p.DisableRelay(),
			)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			from, to := old, n.Host()
			if dialer == "the node" {
				from, to = n.Host(), old
			}
			if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
				t.Fatalf("connect: %v", err)
			}
			conns := from.Network().ConnsToPeer(to.ID())
			if len(conns) == 0 {
				t.Fatal("no connection after Connect")
			}
			if got := conns[0].ConnState().Security; got != noise.ID {
				t.Fatalf("secured with %q, want %q", got, noise.ID)
			}
		})
	}
}

// The host is built from go-libp2p's config package rather than libp2p.New
// (host.go). What libp2p.New would have given still holds: libp2p's metrics
// on the default registry (every daemon's /metrics), ping and identify
// served, a resource manager with limits, and the user agent.
func TestHostKeepsWhatLibp2pNewGave(t *testing.T) {
	nodes := p2ptest.Network(t, 2, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	a, b := nodes[0].Host(), nodes[1].Host()
	if err := b.Connect(ctx, nodes[0].AddrInfo()); err != nil {
		t.Fatal(err)
	}
	res := <-ping.Ping(ctx, b, a.ID())
	if res.Error != nil || res.RTT <= 0 {
		t.Fatalf("ping: %v (RTT %v)", res.Error, res.RTT)
	}
	eventually.True(t, 5*time.Second, "identify gives the peer's user agent", func() bool {
		ua, err := b.Peerstore().Get(a.ID(), "AgentVersion")
		return err == nil && ua != ""
	})

	if _, ok := a.Network().ResourceManager().(*network.NullResourceManager); ok {
		t.Fatal("the host has no resource manager")
	}
	// identify has libp2p's own service limits, not the default ones.
	inbound := func(service string) int {
		var n int
		err := a.Network().ResourceManager().ViewService(service, func(s network.ServiceScope) error {
			l, ok := s.(rcmgr.ResourceScopeLimiter)
			if !ok {
				return fmt.Errorf("service scope %T has no limit", s)
			}
			n = l.Limit().GetStreamLimit(network.DirInbound)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if id, other := inbound(identify.ServiceName), inbound("physarum/test/none"); id == other {
		t.Fatalf("identify's inbound stream limit is the default service limit (%d)", id)
	}

	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"libp2p_swarm_": false, "libp2p_rcmgr_": false, "libp2p_identify_": false}
	for _, f := range families {
		for prefix := range want {
			if strings.HasPrefix(f.GetName(), prefix) {
				want[prefix] = true
			}
		}
	}
	for prefix, seen := range want {
		if !seen {
			t.Errorf("no %s* metric on the default registry", prefix)
		}
	}
}
