package agent

import (
	"fmt"
	"github.com/libp2p/go-libp2p/core/peer"
	"net"
	"strconv"
	"strings"
	"sync"
)

// ports are the ports an instance listens on. With host networking (the
// Docker runtime) and plain processes alike, instances share the node's
// port space, so the allocator hands them out.
type ports struct {
	Service int // the service itself (SERVICE_PORT)
	Proxy   int // the proxy's local HTTP port (PROXY_PORT)
	P2P     int // the proxy's libp2p port
	Metrics int // the proxy's metrics (METRICS_PORT)
}

func (p ports) list() []int { return []int{p.Service, p.Proxy, p.P2P, p.Metrics} }

func (p ports) String() string {
	var s []string
	for _, v := range p.list() {
		s = append(s, strconv.Itoa(v))
	}
	return strings.Join(s, ",")
}

func parsePorts(s string) (ports, error) {
	f := strings.Split(s, ",")
	if len(f) != 4 {
		return ports{}, fmt.Errorf("ports label %q: want 4 ports", s)
	}
	var v [4]int
	for i := range f {
		n, err := strconv.Atoi(f[i])
		if err != nil || n <= 0 || n > 65535 {
			return ports{}, fmt.Errorf("ports label %q: %q is not a port", s, f[i])
		}
		v[i] = n
	}
	return ports{Service: v[0], Proxy: v[1], P2P: v[2], Metrics: v[3]}, nil
}

// portPool hands out ports the kernel says are free and that no instance
// of this allocator holds, so two instances can never collide. (Another
// program may still take a port between our check and the instance's
// bind; the instance then fails to start and is restarted on new ports by
// the next deploy.)
type portPool struct {
	mu    sync.Mutex
	inUse map[int]bool
}

func newPortPool() *portPool { return &portPool{inUse: map[int]bool{}} }

// take reserves four free ports.
func (pp *portPool) take() (ports, error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	var got []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for attempts := 0; len(got) < 4; attempts++ {
		if attempts > 100 {
			return ports{}, fmt.Errorf("no free ports found")
		}
		// Hold each listener until all four are picked, so the kernel does
		// not hand us the same port twice.
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return ports{}, fmt.Errorf("find a free port: %w", err)
		}
		listeners = append(listeners, l)
		p := l.Addr().(*net.TCPAddr).Port
		if !pp.inUse[p] {
			got = append(got, p)
		}
	}
	for _, p := range got {
		pp.inUse[p] = true
	}
	return ports{Service: got[0], Proxy: got[1], P2P: got[2], Metrics: got[3]}, nil
}

// hold marks an adopted instance's ports as taken.
func (pp *portPool) hold(p ports) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, v := range p.list() {
		pp.inUse[v] = true
	}
}

// put returns an instance's ports.
func (pp *portPool) put(p ports) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, v := range p.list() {
		delete(pp.inUse, v)
	}
}

func peerIDFromString(s string) (peer.ID, error) {
	id, err := peer.Decode(s)
	if err != nil {
		return "", fmt.Errorf("peer ID %q: %w", s, err)
	}
	return id, nil
}
