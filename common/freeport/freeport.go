// Package freeport picks TCP ports for processes that are started later
// and bind them themselves (instances, daemons of the demo and the bench).
//
// Asking the kernel for port 0 returns a port of the ephemeral range, the
// same range outgoing connections take their local ports from. Between the
// pick and the child's bind, any connection on the machine may then take
// the port (with a hundred daemons on one host, it happens: "address
// already in use"). Ports are therefore picked at random below the
// ephemeral range, where the kernel never puts outgoing connections, as
// Nomad does for its dynamic ports.
//
// Every pick of a port for someone else to bind later goes through this
// package, in tests too (T). A test that binds port 0 itself and keeps
// the listener needs no pick.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default range: below Linux's default ephemeral range (32768-60999) and
// above the ports well-known services use.
const (
	DefaultLow  = 20000
	DefaultHigh = 32767
)

// ErrNone means no free port was found in the range.
var ErrNone = errors.New("no free port found")

// Range returns the range ports are picked from: [DefaultLow, DefaultHigh],
// ended below the kernel's ephemeral range if that starts lower.
func Range() (low, high int) {
	low, high = DefaultLow, DefaultHigh
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if eph, err := strconv.Atoi(f[0]); err == nil && eph-1 < high && eph-1 > 1024 {
				high = eph - 1
				low = min(low, high/2+1)
			}
		}
	}
	return low, high
}

// handedOut remembers the ports this process handed out in the last
// minute: until its child binds it, a port picked looks free, and two
// picks in a row (an etcd member's client and peer ports) must not get the
// same one.
var handedOut = struct {
	sync.Mutex
	at map[int]time.Time
}{at: map[int]time.Time{}}

const handedOutFor = time.Minute

// recent reports whether p was handed out lately; it forgets the old ones.
func recent(p int, now time.Time) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	for q, at := range handedOut.at {
		if now.Sub(at) > handedOutFor {
			delete(handedOut.at, q)
		}
	}
	_, ok := handedOut.at[p]
	return ok
}

func handOut(ports []int, now time.Time) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for _, p := range ports {
		handedOut.at[p] = now
	}
	markMachineWide(ports, now)
}

// Across processes: a port one process handed out may be free for a
// while before its owner binds it, or again (a daemon restarted on the
// same port after a crash, an outage test's registry); another process
// picking it meanwhile makes the owner fail with "address already in
// use". So every pick is also marked for the whole machine, as an empty
// file named after the port whose time is the pick's, and no process picks
// a port marked within markedFor. Failing to mark (no writable temporary
// directory) only loses that protection.
const markedFor = 10 * time.Minute

func markDir() string { return filepath.Join(os.TempDir(), "physarum-ports") }

func markFile(p int) string { return filepath.Join(markDir(), strconv.Itoa(p)) }

func markMachineWide(ports []int, now time.Time) {
	if err := os.MkdirAll(markDir(), 0o777); err != nil {
		return
	}
	for _, p := range ports {
		f := markFile(p)
		if os.WriteFile(f, nil, 0o666) == nil {
			_ = os.Chtimes(f, now, now)
		}
	}
}

// markedElsewhere reports whether any process marked p lately.
func markedElsewhere(p int, now time.Time) bool {
	st, err := os.Stat(markFile(p))
	return err == nil && now.Sub(st.ModTime()) < markedFor
}

// Take returns n distinct ports that are free on host (e.g. "127.0.0.1",
// or "" for every interface), not handed out by this process in the last
// minute, and for which skip is false (skip may be nil). Each one is held
// while the rest are picked.
func Take(host string, n int, skip func(port int) bool) ([]int, error) {
	low, high := Range()
	var got []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for attempt := 0; len(got) < n; attempt++ {
		if attempt >= 50*n {
			return nil, fmt.Errorf("%w in %d-%d after %d attempts", ErrNone, low, high, attempt)
		}
		p := low + rand.IntN(high-low+1)
		if skip != nil && skip(p) || slices.Contains(got, p) || recent(p, time.Now()) || markedElsewhere(p, time.Now()) {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			continue // taken
		}
		held = append(held, l)
		got = append(got, p)
	}
	handOut(got, time.Now())
	return got, nil
}

// One returns one free port on host, or 0 when none is found (the caller
// then lets the child pick: port 0).
func One(host string) int {
	p, err := Take(host, 1, nil)
	if err != nil {
		return 0
	}
	return p[0]
}

// Prefer returns want if it is free on host, or else One(host). (want is
// the caller's own: it is neither checked against nor marked for the
// machine.)
func Prefer(host string, want int) int {
	if want > 0 {
		if l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(want))); err == nil {
			l.Close()
			return want
		}
	}
	return One(host)
}

// TB is the part of testing.TB that T uses (this package is also built
// into the binaries, which must not import testing).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// T returns a free port on 127.0.0.1 for a test to hand to what it
// starts, and fails the test when none is found.
func T(t TB) int {
	t.Helper()
	p, err := Take("127.0.0.1", 1, nil)
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	return p[0]
}
