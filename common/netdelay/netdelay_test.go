package netdelay_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/netdelay"
	"github.com/physarum-p2p/physarum/common/p2ptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, p2ptest.IgnoreLeaks()...)
}

// minPing takes a few samples and returns the smallest, which is the
// delay's floor without scheduling noise.
func minPing(t *testing.T, from, to *p2ptest.Node) time.Duration {
	t.Helper()
	best := time.Hour
	for range 3 {
		from.RTT().Forget(to.ID())
		d, err := from.RTT().Ping(t.Context(), to.ID())
		if err != nil {
			t.Fatal(err)
		}
		best = min(best, d)
	}
	return best
}

func TestDelayAddsToMeasuredRTTAndCanChange(t *testing.T) {
	delay := netdelay.New(20 * time.Millisecond)
	nodes := p2ptest.Network(t, 2, func(i int, s *p2ptest.Spec) {
		if i == 1 {
			s.Delay = delay
		}
	})
	if d := minPing(t, nodes[0], nodes[1]); d < 20*time.Millisecond || d > 200*time.Millisecond {
		t.Fatalf("RTT with a 20ms one-way delay = %s", d)
	}
	delay.Set(45 * time.Millisecond)
	if d := minPing(t, nodes[0], nodes[1]); d < 45*time.Millisecond {
		t.Fatalf("RTT after raising the delay to 45ms = %s", d)
	}
	delay.Set(0)
	eventually.Succeeds(t, 5*time.Second, func() error {
		if d := minPing(t, nodes[0], nodes[1]); d > 10*time.Millisecond {
			return fmt.Errorf("RTT %s after removing the delay", d)
		}
		return nil
	})
}

func TestDelayedNodesCarryBulkDataInOrder(t *testing.T) {
	delay := netdelay.New(5 * time.Millisecond)
	nodes := p2ptest.Network(t, 2, func(i int, s *p2ptest.Spec) { s.Delay = delay })
	const proto = "/physarum/test-echo/1.0.0"
	nodes[1].Host().SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	s, err := nodes[0].Host().NewStream(t.Context(), nodes[1].ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		_, _ = s.Write(payload)
		_ = s.CloseWrite()
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d bytes differ from the %d sent", len(got), len(payload))
	}
}

func TestCrossHostDelaySparesTrafficWithinAHost(t *testing.T) {
	on := func(ip string, d *netdelay.Delay) *p2ptest.Node {
		n := p2ptest.Start(t, p2ptest.Spec{Listen: ma.StringCast("/ip4/" + ip + "/tcp/0"), Delay: d})
		return n
	}
	siteB1 := on("127.0.0.3", netdelay.NewCrossHost(20*time.Millisecond))
	siteB2 := on("127.0.0.3", netdelay.NewCrossHost(20*time.Millisecond))
	siteA := on("127.0.0.2", nil)
	for _, pair := range [][2]*p2ptest.Node{{siteB1, siteB2}, {siteA, siteB1}} {
		if err := pair[0].Host().Connect(t.Context(), pair[1].AddrInfo()); err != nil {
			t.Fatal(err)
		}
	}
	if d := minPing(t, siteB1, siteB2); d > 10*time.Millisecond {
		t.Fatalf("within a host: RTT %s, want no added delay", d)
	}
	if d := minPing(t, siteA, siteB1); d < 20*time.Millisecond {
		t.Fatalf("between hosts: RTT %s, want at least the 20ms delay", d)
	}
}
