package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/callbacks"
)

// hookReceiver is a webhook endpoint that can be told to fail (503): it
// checks every delivery's signature (verify, as the reference docs show)
// and keeps each POST, accepted or not, with the time it came.
type hookReceiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	secret  string
	failing bool
	posts   []hookPost
	bad     []string
}

type hookPost struct {
	event    registry.Event
	accepted bool
	at       time.Time
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	r := &hookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	p := hookPost{accepted: !r.failing, at: time.Now()}
	if err := verify(r.secret, req.Header, body); err != nil {
		r.bad = append(r.bad, err.Error())
	}
	if err := json.Unmarshal(body, &p.event); err != nil || p.event.ID != req.Header.Get("webhook-id") {
		r.bad = append(r.bad, fmt.Sprintf("delivery %s: body %.100q", req.Header.Get("webhook-id"), body))
	}
	r.posts = append(r.posts, p)
	if !p.accepted {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *hookReceiver) setFailing(on bool) { r.mu.Lock(); r.failing = on; r.mu.Unlock() }

func (r *hookReceiver) all() ([]hookPost, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.posts), slices.Clone(r.bad)
}

// acceptedIDs lists the events the receiver accepted, each once, in the
// order it first accepted them.
func (r *hookReceiver) acceptedIDs() []string {
	posts, _ := r.all()
	seen := map[string]bool{}
	var out []string
	for _, p := range posts {
		if p.accepted && !seen[p.event.ID] {
			seen[p.event.ID] = true
			out = append(out, p.event.ID)
		}
	}
	return out
}

// waitDelivered waits until the receiver has accepted every event of the
// reference stream that cb selects, in the stream's order, and returns
// how many that is.
func waitDelivered(t *testing.T, rc *hookReceiver, ref *eventStream, cb registry.Callback, timeout time.Duration) int {
	t.Helper()
	n := 0
	eventually.Succeeds(t, timeout, func() error {
		var want []string
		for _, e := range ref.events() {
			if e.Index > cb.Cursor && cb.Selects(e) {
				want = append(want, e.ID)
			}
		}
		got := rc.acceptedIDs()
		if len(got) < len(want) {
			return fmt.Errorf("%d of the %d events selected so far accepted", len(got), len(want))
		}
		if !slices.Equal(got[:len(want)], want) {
			t.Fatalf("accepted %v, want the stream's %v first, in its order", got, want)
		}
		n = len(want)
		return nil
	})
	return n
}

func getCallback(t *testing.T, base, id string) registry.Callback {
	t.Helper()
	var cb registry.Callback
	if err := json.Unmarshal(mustAPI(t, "GET", base+"/callbacks/"+id, nil), &cb); err != nil {
		t.Fatal(err)
	}
	return cb
}

// A callback for a service gets its events, signed, in the order of the
// event stream, through the HTTP API; then, with its receiver refusing
// deliveries so that they queue up, the registry-service that leads the
// delivery worker is killed: another takes over from the stored cursor
// and every event still arrives (counted against a reader of the event
// stream on a registry-service that stayed up).
func TestCallbacksSurviveTheirLeadersDeath(t *testing.T) {
	n := newNetwork(t)
	regs := map[string]*proctest.Proc{"registry": n.registry()}
	apis := map[string]string{"registry": n.api}
	for _, name := range []string{"registry-2", "registry-3"} {
		regs[name] = n.member(name)
		apis[name] = n.api
	}
	var leader string
	eventually.Succeeds(t, 30*time.Second, func() error {
		for name, p := range regs {
			if strings.Contains(p.Stderr(), callbacks.LeadsLine) {
				leader = name
				return nil
			}
		}
		return fmt.Errorf("no registry-service says it leads the callbacks")
	})
	var survivors []string
	for name := range regs {
		if name != leader {
			survivors = append(survivors, name)
		}
	}
	sort.Strings(survivors)
	base := apis[survivors[0]]
	n.api = base
	n.namedAllocator("n1", "")
	n.namedAllocator("n2", "")
	n.addHello()

	rc := newHookReceiver(t)
	var cb registry.Callback
	code, body := api(t, "POST", apis[leader]+"/callbacks", map[string]string{"url": rc.srv.URL + "/physarum", "service": "hello"})
	if code != http.StatusCreated || json.Unmarshal(body, &cb) != nil || cb.Secret == "" {
		t.Fatalf("POST /callbacks: %d %s", code, body)
	}
	rc.mu.Lock()
	rc.secret = cb.Secret
	rc.mu.Unlock()
	ref := openEvents(t, fmt.Sprintf("%s/v1/events?index=%d", apis[survivors[1]], cb.Cursor))

	// Deliveries as they happen: a scale to 2, its instances' events.
	mustAPI(t, "POST", base+"/service/hello/scale", map[string]any{"number": 2})
	waitRunning(t, base, "hello", registry.ComputePhysarum, 2, time.Minute)
	first := waitDelivered(t, rc, ref, cb, 30*time.Second)
	posts, _ := rc.all()
	var lat, read []time.Duration
	for _, p := range posts {
		read = append(read, p.at.Sub(p.event.Time))
		if at, ok := ref.arrival(func(e registry.Event) bool { return e.ID == p.event.ID }); ok {
			lat = append(lat, p.at.Sub(at))
		}
	}
	slices.Sort(lat)
	slices.Sort(read)
	t.Logf("%d events delivered as they happened: from the worker reading an event to its POST arriving, median %s, max %s; "+
		"POST arrival minus the event's arrival on a /v1/events reader: median %s, max %s",
		first, read[len(read)/2].Round(100*time.Microsecond), read[len(read)-1].Round(100*time.Microsecond),
		lat[len(lat)/2].Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))

	// The receiver refuses: a scale to 4 queues its events.
	rc.setFailing(true)
	mustAPI(t, "POST", base+"/service/hello/scale", map[string]any{"number": 4})
	var failing registry.Callback
	eventually.Succeeds(t, 30*time.Second, func() error {
		failing = getCallback(t, base, cb.ID)
		if !strings.Contains(failing.LastError, "503") || failing.FailingSince.IsZero() || failing.Pending < 2 {
			return fmt.Errorf("callback state %+v", failing)
		}
		return nil
	})
	regs[leader].Kill()
	killed := time.Now()
	t.Logf("killed %s, the callbacks' leader, with deliveries failing (last error %q, %d pending)", leader, failing.LastError, failing.Pending)
	rc.setFailing(false)
	// More events after the kill, on the same callback: the desired count
	// written again (whether the instances starting at the kill are
	// running yet is the reconciler's business, not this test's).
	mustAPI(t, "POST", base+"/service/hello/scale", map[string]any{"number": 4})
	total := waitDelivered(t, rc, ref, cb, time.Minute)
	posts, bad := rc.all()
	for _, b := range bad {
		t.Error(b)
	}
	accepted := 0
	for _, p := range posts {
		if p.accepted {
			accepted++
		}
	}
	newLeader := ""
	for _, name := range survivors {
		if strings.Contains(regs[name].Stderr(), callbacks.LeadsLine) {
			newLeader = name
		}
	}
	t.Logf("all %d selected events delivered %s after the kill (new leader %s): %d POSTs, %d accepted (%d repeats, allowed: at least once)",
		total, time.Since(killed).Round(time.Millisecond), newLeader, len(posts), accepted, accepted-len(rc.acceptedIDs()))
	if newLeader == "" {
		t.Error("no surviving registry-service says it leads the callbacks")
	}
	// The state follows the deliveries: the leader stores it at most every
	// 250 ms, so the last success may not be in it yet.
	eventually.Succeeds(t, 10*time.Second, func() error {
		st := getCallback(t, base, cb.ID)
		if st.LastError != "" || !st.FailingSince.IsZero() || st.Delivered < int64(total) {
			return fmt.Errorf("callback state after the recovery: %+v", st)
		}
		return nil
	})
}
