package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

// load sends a steady stream of GETs to url, half on one keep-alive
// connection and half on a new connection each, until stop is called,
// and counts what failed.
type load struct {
	mu       sync.Mutex
	sent, ok int
	failures []string // the first few, for the report

	stop func()
	done sync.WaitGroup
}

func startLoad(url string, perSecond int) *load {
	l := &load{}
	quit := make(chan struct{})
	l.stop = sync.OnceFunc(func() { close(quit); l.done.Wait() })
	clients := []*http.Client{
		{Timeout: 10 * time.Second},
		{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	for _, c := range clients {
		l.done.Go(func() {
			tick := time.NewTicker(time.Second / time.Duration(perSecond/len(clients)))
			defer tick.Stop()
			for {
				select {
				case <-quit:
					return
				case <-tick.C:
					l.record(get(c, url))
				}
			}
		})
	}
	return l
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "hello from") {
		return fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

func (l *load) record(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	if err == nil {
		l.ok++
		return
	}
	if len(l.failures) < 10 {
		l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
	}
}

// failed reports the requests that failed since the load started.
func (l *load) failed() (sent, failed int, first []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent, l.sent - l.ok, slices.Clone(l.failures)
}

// runFor waits until n more requests have been sent: a stretch of load
// measured in requests (about n/100 s at 100 req/s), not in sleep.
func (l *load) runFor(t *testing.T, n int) {
	t.Helper()
	sent, _, _ := l.failed()
	eventually.True(t, time.Duration(n)*100*time.Millisecond, fmt.Sprintf("%d more requests", n), func() bool {
		now, _, _ := l.failed()
		return now >= sent+n
	})
}

func (l *load) mustNotFail(t *testing.T, when string) {
	t.Helper()
	sent, failed, first := l.failed()
	t.Logf("%s: %d requests, %d failed", when, sent, failed)
	if failed > 0 {
		t.Fatalf("%s: %d of %d requests failed; first: %s", when, failed, sent, strings.Join(first, "; "))
	}
	if sent == 0 {
		t.Fatalf("%s: no request was sent", when)
	}
}

// TestRunningServicesOutliveTheRegistry: the registry's only member is
// killed under a steady load; what runs keeps answering from the proxy's
// last known state, an instance lost meanwhile is routed around, a
// service never seen is a quick 503, and once the member is back new
// deployments work again and the allocators' instances are the same
// processes as before: an on-demand one that served throughout was not
// culled, though the outage lasted four of its idle timeouts.
func TestRunningServicesOutliveTheRegistry(t *testing.T) {
	n := newNetwork(t)
	reg := n.registry()
	n.allocator("alloc1", launch.Allocator{IdleTimeout: 15 * time.Second})
	n.allocator("alloc2", launch.Allocator{IdleTimeout: 15 * time.Second})
	n.addHello()
	_, base := n.proxy()
	hello(t, base, 30*time.Second) // starts an on-demand instance
	n.mustCLI("deploy", "hello")   // and a pinned one
	var kept, lost registry.Instance
	eventually.Succeeds(t, 10*time.Second, func() error {
		insts := n.instances("hello")
		if len(insts) != 2 || insts[0].OnDemand == insts[1].OnDemand {
			return fmt.Errorf("want an on-demand and a pinned instance, have %+v", insts)
		}
		kept, lost = insts[0], insts[1]
		if !kept.OnDemand {
			kept, lost = lost, kept
		}
		return nil
	})
	pids := map[string][]int{}
	for _, in := range []registry.Instance{kept, lost} {
		pids[in.ID] = pidsWithEnv("PHYSARUM_INSTANCE_ID=" + in.ID)
	}

	l := startLoad(base+"/hello/", 100)
	defer l.stop()
	l.runFor(t, 200) // a steady state to compare with
	l.mustNotFail(t, "before the outage")

	reg.Kill()
	outage := time.Now()

	// A service the proxy never resolved: a quick 503 naming the registry.
	start := time.Now()
	resp, err := http.Get(base + "/never-seen/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "registry") || took > 2*time.Second {
		t.Errorf("unknown service during the outage: %d %s after %s; want a 503 naming the registry within 2s", resp.StatusCode, body, took)
	}

	// One of the two instances dies: requests move to the other.
	l.runFor(t, 500) // into the outage, as a user's bad day goes
	for _, pid := range pids[lost.ID] {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(time.Until(outage.Add(60 * time.Second))) // the outage lasts a minute
	l.mustNotFail(t, "60 s without a registry")

	reg.Restart()
	reg.WaitOutput(launch.RegistryReady, time.Minute)
	back := time.Now()
	eventually.Succeeds(t, 10*time.Second, func() error {
		_, errs, code := n.cli("deploy", "hello")
		if code != 0 {
			return fmt.Errorf("deploy: %s", errs)
		}
		return nil
	})
	t.Logf("a new deployment worked %s after the registry was back", time.Since(back).Round(time.Millisecond))
	l.stop()
	l.mustNotFail(t, "the whole run")

	// The instance nobody killed is the very same processes (not culled,
	// not restarted); none is listed twice.
	if now := pidsWithEnv("PHYSARUM_INSTANCE_ID=" + kept.ID); !slices.Equal(now, pids[kept.ID]) {
		t.Errorf("instance %s ran as %v before the outage and %v after", kept.ID, pids[kept.ID], now)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		seen := map[string]int{}
		for _, in := range n.instances("hello") {
			seen[in.ID]++
		}
		if seen[kept.ID] != 1 || seen[lost.ID] != 1 || len(seen) != 3 {
			return fmt.Errorf("instances after the outage: %v; want %s, %s and the new one, once each", seen, kept.ID, lost.ID)
		}
		return nil
	})
}

// TestLosingOneOfThreeMembersFailsNoRequest: with three registry members,
// one killed under load costs no request.
func TestLosingOneOfThreeMembersFailsNoRequest(t *testing.T) {
	n := newNetwork(t)
	first := n.registry()
	n.member("registry2")
	n.member("registry3")
	n.allocator("alloc1")
	n.addHello()
	n.mustCLI("deploy", "hello")
	_, base := n.proxy()
	hello(t, base, 30*time.Second)
	var members []registry.Member
	eventually.Succeeds(t, 30*time.Second, func() error {
		members = n.members()
		if len(members) != 3 {
			return fmt.Errorf("members %+v", members)
		}
		return nil
	})

	l := startLoad(base+"/hello/", 100)
	defer l.stop()
	l.runFor(t, 200) // steady state first
	first.Kill()
	l.runFor(t, 1500) // the load runs on while the cluster carries on with two
	l.stop()
	l.mustNotFail(t, "one of three members killed")
}

// member starts a registry-service that joins the first one's cluster.
func (n *network) member(name string) *proctest.Proc {
	n.t.Helper()
	dir := n.t.TempDir()
	r := launch.Registry{
		Node:    launch.Node{KeyFile: filepath.Join(dir, "key"), Bootstrap: n.boot},
		DataDir: filepath.Join(dir, "data"), UnsafeNoFsync: true,
	}
	p := proctest.Start(n.t, name, n.bin["registry-service"], r.Args(), n.env)
	p.WaitOutput(launch.RegistryReady, time.Minute)
	n.api = r.APIURL()
	return p
}

// members lists the registry cluster's members.
func (n *network) members() []registry.Member {
	n.t.Helper()
	var out []registry.Member
	if err := json.Unmarshal([]byte(n.mustCLI("-json", "members")), &out); err != nil {
		n.t.Fatal(err)
	}
	return out
}
