// Package netdelay is a libp2p TCP transport that adds latency in user space.
//
// The kernels we test on have no netem, so latency-aware behaviour is tested
// by delaying, on one node, every byte it writes to any connection by a
// settable amount. The RTT between two nodes then grows by the sum of their
// delays, and the real libp2p ping path measures it. The delay can change
// while connections are open (Delay.Set), which is how tests make a nearby
// instance "move away".
//
// It is a test and demo tool: production nodes use the plain TCP transport.
package netdelay

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"
	ma "github.com/multiformats/go-multiaddr"
	mafmt "github.com/multiformats/go-multiaddr-fmt"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Delay is a one-way latency added to every write. The zero value adds none.
// Safe for concurrent use.
type Delay struct {
	ns atomic.Int64
	// crossHost limits the delay to connections between different IP
	// addresses: nodes sharing an address are one "site" and talk at
	// loopback speed, as on a real LAN.
	crossHost bool
}

// New returns a Delay of d on every connection.
func New(d time.Duration) *Delay {
	var dl Delay
	dl.Set(d)
	return &dl
}

// NewCrossHost returns a Delay of d on connections whose ends have
// different IP addresses only. Give each simulated site its own loopback
// address (127.0.0.2, 127.0.0.3, ...) and traffic within a site is not
// delayed while traffic between sites is.
func NewCrossHost(d time.Duration) *Delay {
	dl := New(d)
	dl.crossHost = true
	return dl
}

// applies reports whether the delay applies to a connection from local to
// remote.
func (d *Delay) applies(local, remote ma.Multiaddr) bool {
	if d == nil || !d.crossHost {
		return true
	}
	lip, err1 := manet.ToIP(local)
	rip, err2 := manet.ToIP(remote)
	return err1 != nil || err2 != nil || !lip.Equal(rip)
}

// Set changes the delay for writes made from now on.
func (d *Delay) Set(v time.Duration) { d.ns.Store(int64(v)) }

// Get returns the current delay.
func (d *Delay) Get() time.Duration {
	if d == nil {
		return 0
	}
	return time.Duration(d.ns.Load())
}

// Transport is a TCP transport whose connections pass through a Delay.
type Transport struct {
	upgrader transport.Upgrader
	rcmgr    network.ResourceManager
	delay    *Delay

	mu       sync.Mutex
	listenIP net.IP // the specific IP we listen on, if any
}

// localAddr is the address outbound connections are dialled from.
func (t *Transport) localAddr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.listenIP == nil {
		return nil
	}
	return &net.TCPAddr{IP: t.listenIP}
}

var _ transport.Transport = (*Transport)(nil)

// Constructor returns a constructor for libp2p.Transport that builds a
// Transport delaying by d.
func Constructor(d *Delay) func(transport.Upgrader, network.ResourceManager) (*Transport, error) {
	return func(u transport.Upgrader, rcmgr network.ResourceManager) (*Transport, error) {
		if rcmgr == nil {
			rcmgr = &network.NullResourceManager{}
		}
		return &Transport{upgrader: u, rcmgr: rcmgr, delay: d}, nil
	}
}

var dialMatcher = mafmt.And(mafmt.IP, mafmt.Base(ma.P_TCP))

// CanDial reports whether addr is a TCP address.
func (t *Transport) CanDial(addr ma.Multiaddr) bool { return dialMatcher.Matches(addr) }

// Protocols returns the protocols this transport dials: TCP.
func (t *Transport) Protocols() []int { return []int{ma.P_TCP} }

// Proxy is false: this is a direct transport.
func (t *Transport) Proxy() bool { return false }

func (t *Transport) String() string { return "TCP (delayed)" }

// Dial opens a delayed TCP connection to raddr and upgrades it.
func (t *Transport) Dial(ctx context.Context, raddr ma.Multiaddr, p peer.ID) (transport.CapableConn, error) {
	scope, err := t.rcmgr.OpenConnection(network.DirOutbound, true, raddr)
	if err != nil {
		return nil, err
	}
	c, err := t.dial(ctx, raddr, p, scope)
	if err != nil {
		scope.Done()
		return nil, err
	}
	return c, nil
}

func (t *Transport) dial(ctx context.Context, raddr ma.Multiaddr, p peer.ID, scope network.ConnManagementScope) (transport.CapableConn, error) {
	if err := scope.SetPeer(p); err != nil {
		return nil, err
	}
	// Dial from the address we listen on, as the TCP transport does with
	// reuseport: a node on 127.0.0.3 must not appear to come from 127.0.0.1.
	d := manet.Dialer{Dialer: net.Dialer{LocalAddr: t.localAddr()}}
	c, err := d.DialContext(ctx, raddr)
	if err != nil {
		return nil, err
	}
	return t.upgrader.Upgrade(ctx, t, wrap(c, t.delay), network.DirOutbound, p, scope)
}

// Listen listens on laddr; accepted connections are delayed too.
func (t *Transport) Listen(laddr ma.Multiaddr) (transport.Listener, error) {
	l, err := manet.Listen(laddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", laddr, err)
	}
	if ip, err := manet.ToIP(laddr); err == nil && !ip.IsUnspecified() {
		t.mu.Lock()
		t.listenIP = ip
		t.mu.Unlock()
	}
	return t.upgrader.UpgradeGatedMaListener(t, t.upgrader.GateMaListener(&listener{Listener: l, delay: t.delay})), nil
}

type listener struct {
	manet.Listener
	delay *Delay
}

func (l *listener) Accept() (manet.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrap(c, l.delay), nil
}

// packet is one write waiting for its time.
type packet struct {
	due  time.Time
	data []byte
}

// conn delays writes: Write queues a copy stamped with its due time and
// returns, and one pump goroutine writes packets out in order as they fall
// due. Queueing, not sleeping in Write, keeps throughput while adding latency.
type conn struct {
	manet.Conn
	delay *Delay

	queue     chan packet
	done      chan struct{}
	closeOnce sync.Once
	werr      atomic.Pointer[error]
}

func wrap(c manet.Conn, d *Delay) manet.Conn {
	if !d.applies(c.LocalMultiaddr(), c.RemoteMultiaddr()) {
		return c
	}
	dc := &conn{Conn: c, delay: d, queue: make(chan packet, 1024), done: make(chan struct{})}
	go dc.pump()
	return dc
}

func (c *conn) Write(b []byte) (int, error) {
	if p := c.werr.Load(); p != nil {
		return 0, *p
	}
	data := make([]byte, len(b))
	copy(data, b)
	select {
	case c.queue <- packet{due: time.Now().Add(c.delay.Get()), data: data}:
		return len(b), nil
	case <-c.done:
		return 0, net.ErrClosed
	}
}

func (c *conn) pump() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		var p packet
		select {
		case p = <-c.queue:
		case <-c.done:
			return
		}
		if wait := time.Until(p.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-c.done:
				return
			}
		}
		if _, err := c.Conn.Write(p.data); err != nil {
			c.werr.Store(&err)
			_ = c.Conn.Close()
			return
		}
	}
}

func (c *conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		err = c.Conn.Close()
	})
	return err
}
