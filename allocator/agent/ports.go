package agent

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/freeport"
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

// portPool hands out ports that were free a moment ago and that no
// instance of this allocator holds, so two instances can never collide.
// They come from below the kernel's ephemeral range (freeport), where no
// outgoing connection takes them before the instance binds. (Another
// program, or another allocator on the same host, may still bind one
// meanwhile: the start then fails with "address already in use", and run
// starts the instance again on new ports.)
type portPool struct {
	mu    sync.Mutex
	inUse map[int]bool
	pick  func(host string, n int, skip func(int) bool) ([]int, error) // freeport.Take; tests replace it
}

func newPortPool() *portPool { return &portPool{inUse: map[int]bool{}, pick: freeport.Take} }

// take reserves four free ports.
func (pp *portPool) take() (ports, error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	got, err := pp.pick("", 4, func(p int) bool { return pp.inUse[p] })
	if err != nil {
		return ports{}, fmt.Errorf("instance ports: %w", err)
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
