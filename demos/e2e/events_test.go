package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
)

// eventStream is a reader of a registry-service's GET /v1/events, as a
// tool tailing it would be: every line kept with the time it arrived.
type eventStream struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	evs    []registry.Event
	at     []time.Time
	last   int64 // the last index heard, heartbeats included
	status int
	err    error
}

// openEvents starts reading url (a /v1/events URL) in the background,
// and waits for the stream's first line (its starting heartbeat).
func openEvents(t *testing.T, url string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	s := &eventStream{cancel: cancel, done: make(chan struct{})}
	go s.read(ctx, url)
	t.Cleanup(s.close)
	eventually.Succeeds(t, 30*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case s.last > 0:
			return nil
		case s.err != nil:
			return fmt.Errorf("GET %s: %d %w", url, s.status, s.err)
		}
		return fmt.Errorf("no line yet from %s", url)
	})
	return s
}

func (s *eventStream) read(ctx context.Context, url string) {
	defer close(s.done)
	fail := func(status int, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.status, s.err = status, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fail(0, err)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail(0, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		fail(resp.StatusCode, fmt.Errorf("%s", b))
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e registry.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fail(resp.StatusCode, fmt.Errorf("line %q: %w", sc.Bytes(), err))
			return
		}
		s.mu.Lock()
		s.last = max(s.last, e.Index)
		if e.Type != registry.EventHeartbeat {
			s.evs = append(s.evs, e)
			s.at = append(s.at, time.Now())
		}
		s.mu.Unlock()
	}
	fail(resp.StatusCode, fmt.Errorf("stream ended: %w", cmp.Or(sc.Err(), io.EOF)))
}

// close disconnects the reader and waits for it.
func (s *eventStream) close() {
	s.cancel()
	<-s.done
}

func (s *eventStream) events() []registry.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.evs)
}

// arrival is when the first event matching ok arrived.
func (s *eventStream) arrival(ok func(registry.Event) bool) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.evs {
		if ok(e) {
			return s.at[i], true
		}
	}
	return time.Time{}, false
}

// upTo is the events with index at most k, in order.
func upTo(evs []registry.Event, k int64) []registry.Event {
	var out []registry.Event
	for _, e := range evs {
		if e.Index <= k {
			out = append(out, e)
		}
	}
	return out
}

func eventIDs(evs []registry.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// procPeerID is the peer ID a daemon printed at start.
func procPeerID(p *proctest.Proc) string {
	for l := range strings.SplitSeq(p.Stdout(), "\n") {
		if id, ok := strings.CutPrefix(l, "peer ID "); ok {
			return strings.TrimSpace(id)
		}
	}
	return ""
}

// A reader of /v1/events that disconnects, and resumes from the last
// index it had whole on another registry-service after the etcd leader
// was killed in between, gets every event after it once, in order: the
// same as a reader that never disconnected, on a member that stayed up
// (whose own watch lived through the leader's death). An allocator
// killed with an instance and kept down is a lost event for it once its
// lease (3 s) runs out. The latency from a write sent to its event on a
// reader is logged.
func TestEventStreamResumesAcrossALeaderKill(t *testing.T) {
	n := newNetwork(t)
	regs := map[string]*proctest.Proc{"registry": n.registry()}
	apis := map[string]string{"registry": n.api}
	for _, name := range []string{"registry-2", "registry-3"} {
		regs[name] = n.member(name)
		apis[name] = n.api
	}
	// The etcd leader: its peer ID is the leading member's name.
	var leader string
	eventually.Succeeds(t, 30*time.Second, func() error {
		for _, m := range n.members() {
			if !m.Leader {
				continue
			}
			for name, p := range regs {
				if procPeerID(p) == m.Name {
					leader = name
					return nil
				}
			}
		}
		return fmt.Errorf("no leader among %v", n.members())
	})
	var survivors []string
	for name := range regs {
		if name != leader {
			survivors = append(survivors, name)
		}
	}
	sort.Strings(survivors)
	for name, p := range regs {
		if strings.Contains(p.Stderr()+p.Stdout(), control.LeadsLine) {
			t.Logf("etcd leader %s; reconciler leader %s", leader, name)
		}
	}
	n.api = apis[survivors[0]]
	n1 := n.namedAllocator("n1", "")
	n2 := n.namedAllocator("n2", "")
	allocs := map[string]*proctest.Proc{"n1": n1, "n2": n2}
	n.addHello()

	// The reference reads from a survivor all along; the other reader
	// starts from the same index on the leader.
	ref := openEvents(t, apis[survivors[0]]+"/v1/events")
	ref.mu.Lock()
	base := ref.last
	ref.mu.Unlock()
	first := openEvents(t, fmt.Sprintf("%s/v1/events?index=%d", apis[leader], base))

	// Changes: a service added, written and measured (the time from the
	// API's answer to the event on the reference reader), then a scale
	// the reconciler carries out.
	var lat []time.Duration
	for i := range 10 {
		name := fmt.Sprintf("lat%d", i)
		sent := time.Now()
		mustAPI(t, http.MethodPost, n.api+"/service", map[string]any{"name": name, "image": "x:1"})
		var at time.Time
		eventually.True(t, 10*time.Second, "the event of "+name, func() bool {
			var ok bool
			at, ok = ref.arrival(func(e registry.Event) bool { return e.Topic == registry.TopicService && e.Key == name })
			return ok
		})
		lat = append(lat, at.Sub(sent))
	}
	slices.Sort(lat)
	t.Logf("write sent -> its event on a reader: median %s, max %s over %d writes (HTTP API on loopback)",
		lat[len(lat)/2], lat[len(lat)-1], len(lat))
	mustAPI(t, http.MethodPost, n.api+"/service/hello/scale", map[string]any{"number": 2})
	st := waitRunning(t, n.api, "hello", registry.ComputePhysarum, 2, 60*time.Second)

	// The first reader disconnects: k is the last index it has whole
	// (the events of its last one may not all have come).
	var k int64
	eventually.True(t, 30*time.Second, "the first reader to have 15 events", func() bool { return len(first.events()) >= 15 })
	first.close()
	part := first.events()
	k = part[len(part)-1].Index - 1
	part = upTo(part, k)

	// The etcd leader dies; the reader resumes on another member.
	regs[leader].Kill()
	killed := time.Now()
	t.Logf("etcd leader %s killed; resuming at index %d on %s", leader, k, survivors[1])
	second := openEvents(t, fmt.Sprintf("%s/v1/events?index=%d", apis[survivors[1]], k))
	t.Logf("second reader streaming %s after the kill", time.Since(killed).Round(time.Millisecond))

	// The allocator of a hello instance dies and stays down.
	var victim, nodeName string
	for id, in := range pinned(st) {
		victim, nodeName = id, in.NodeName
		break
	}
	if allocs[nodeName] == nil {
		t.Fatalf("instance %s is on %q, which is no allocator of the test (%v)", victim, nodeName, pinned(st))
	}
	allocs[nodeName].Kill()
	allocKilled := time.Now()
	lost := func(e registry.Event) bool {
		return e.Topic == registry.TopicInstance && e.Type == registry.EventLost && e.Key == "hello/"+victim
	}
	for name, s := range map[string]*eventStream{"reference": ref, "resumed": second} {
		eventually.True(t, 30*time.Second, name+" reader: hello/"+victim+" lost", func() bool {
			_, ok := s.arrival(lost)
			return ok
		})
	}
	at, _ := ref.arrival(lost)
	t.Logf("allocator %s SIGKILLed with instance %s: lost event %s later (lease TTL 3 s)", nodeName, victim, at.Sub(allocKilled).Round(time.Millisecond))
	// Let the reconciler replace it, so the streams carry more after.
	waitRunning(t, n.api, "hello", registry.ComputePhysarum, 2, 60*time.Second)

	// Every event after base up to a common index: the reference's,
	// against the first reader's whole revisions and the resumed one's.
	var m int64
	eventually.Succeeds(t, 30*time.Second, func() error {
		r, s := ref.events(), second.events()
		if len(r) == 0 || len(s) == 0 {
			return fmt.Errorf("no events")
		}
		m = min(r[len(r)-1].Index, s[len(s)-1].Index)
		if m < k+1 {
			return fmt.Errorf("the readers are at %d and %d", r[len(r)-1].Index, s[len(s)-1].Index)
		}
		return nil
	})
	want := eventIDs(upTo(ref.events(), m))
	got := eventIDs(append(part, upTo(second.events(), m)...))
	if !slices.Equal(got, want) {
		t.Fatalf("resumed across the leader's death: %d events\n%v\nwant %d\n%v", len(got), got, len(want), want)
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Fatalf("event %s twice", id)
		}
		seen[id] = true
	}
	t.Logf("%d events after index %d compared: %d read before the disconnect (up to index %d), %d after resuming",
		len(want), base, len(part), k, len(want)-len(part))
}
