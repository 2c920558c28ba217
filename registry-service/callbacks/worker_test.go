package callbacks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/callbacks"
	"github.com/physarum-p2p/physarum/registry-service/cluster"
	"github.com/physarum-p2p/physarum/registry-service/cluster/clustertest"
	"github.com/physarum-p2p/physarum/registry-service/control"
	"github.com/physarum-p2p/physarum/registry-service/events"
	"github.com/physarum-p2p/physarum/registry-service/server"
)

// The delivery worker on a real embedded etcd (shared by the tests, which
// run one at a time) and real HTTP receivers (httptest servers that
// verify each delivery's signature as a receiver would).

var shared = clustertest.New("callbacks-test")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(stopEtcdAfterRun{m},
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		// httptest servers' idle keep-alive connections of the worker's
		// client close a moment after the test.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

type stopEtcdAfterRun struct{ m *testing.M }

func (r stopEtcdAfterRun) Run() int {
	defer shared.Close()
	return r.m.Run()
}

// member is the shared etcd member, with /physarum/ cleared.
func member(t *testing.T) *cluster.Member {
	t.Helper()
	return shared.Empty(t)
}

// rig is an etcd with the control operations and a place to start
// workers.
type rig struct {
	t   *testing.T
	m   *cluster.Member
	cli *clientv3.Client
	ctl *control.Control
}

func newRig(t *testing.T) *rig {
	t.Helper()
	m := member(t)
	return &rig{t: t, m: m, cli: m.Client(), ctl: control.New(m.KV(), server.NewStore(m.KV()), control.Config{})}
}

// worker is a running Worker.
type worker struct {
	w      *callbacks.Worker
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs a worker (fast timing) until stopped or the test ends.
func (r *rig) start(name string, cfg callbacks.Config) *worker {
	r.t.Helper()
	cfg.Name, cfg.Fast = name, true
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(tlog{r.t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("worker", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{w: callbacks.New(r.cli, cfg), reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.w.Run(ctx)
	}()
	r.t.Cleanup(w.stop)
	return w
}

func (w *worker) stop() {
	w.cancel()
	<-w.done
	w.w.Close()
}

func (w *worker) leads() bool { return metric(w.reg, "physarum_callbacks_leader") == 1 }

// metric sums a metric's values (counters and gauges) in reg.
func metric(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

type tlog struct{ t *testing.T }

func (l tlog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// delivery is one POST a receiver got.
type delivery struct {
	id, timestamp string
	event         registry.Event
	status        int
	at            time.Time
	signed        bool
}

// receiver is a webhook receiver: it records every delivery, checks its
// signature with the secret it is told, and answers what answer says
// (200 by default).
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	secret string
	got    []delivery
	answer func(n int, id string) int // n counts the POSTs of this id
	bad    []string
	gate   chan struct{} // when set, each POST waits for it to close
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{t: t, answer: func(int, string) int { return 200 }}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-req.Context().Done():
			return
		}
	}
	body, _ := io.ReadAll(req.Body)
	d := delivery{id: req.Header.Get("webhook-id"), timestamp: req.Header.Get("webhook-timestamp"), at: time.Now()}
	r.mu.Lock()
	d.signed = verify(r.secret, req.Header, body)
	var problems []string
	if !d.signed {
		problems = append(problems, "bad signature")
	}
	if err := json.Unmarshal(body, &d.event); err != nil || d.event.ID != d.id {
		problems = append(problems, fmt.Sprintf("body %q does not hold event %s", body, d.id))
	}
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || !strings.Contains(req.Header.Get("User-Agent"), "Physarum") {
		problems = append(problems, fmt.Sprintf("%s with Content-Type %q, User-Agent %q", req.Method, req.Header.Get("Content-Type"), req.Header.Get("User-Agent")))
	}
	if sec, err := strconv.ParseInt(d.timestamp, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		problems = append(problems, "webhook-timestamp "+d.timestamp+" is not now in unix seconds")
	}
	n := 1
	for _, g := range r.got {
		if g.id == d.id {
			n++
		}
	}
	d.status = r.answer(n, d.id)
	r.got = append(r.got, d)
	for _, p := range problems {
		r.bad = append(r.bad, d.id+": "+p)
	}
	r.mu.Unlock()
	w.WriteHeader(d.status)
	_, _ = fmt.Fprintf(w, "status %d\n", d.status)
}

func (r *receiver) setSecret(s string) { r.mu.Lock(); r.secret = s; r.mu.Unlock() }

func (r *receiver) setAnswer(f func(n int, id string) int) { r.mu.Lock(); r.answer = f; r.mu.Unlock() }

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// accepted lists the IDs of the deliveries answered 2xx, in order.
func (r *receiver) accepted() []string {
	var out []string
	for _, d := range r.deliveries() {
		if d.status/100 == 2 {
			out = append(out, d.id)
		}
	}
	return out
}

func (r *receiver) check() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.bad {
		r.t.Error(b)
	}
}

// add registers a callback for the receiver and tells it the secret.
func (r *rig) add(rc *receiver, cb registry.Callback) registry.Callback {
	r.t.Helper()
	cb.URL = rc.srv.URL + "/hook"
	out, err := r.ctl.AddCallback(r.t.Context(), cb)
	if err != nil {
		r.t.Fatal(err)
	}
	rc.setSecret(out.Secret)
	return out
}

func (r *rig) put(key, value string) {
	r.t.Helper()
	if _, err := r.cli.Put(r.t.Context(), key, value); err != nil {
		r.t.Fatal(err)
	}
}

// instance writes an instance record of service svc.
func (r *rig) instance(svc, id, state string) {
	r.t.Helper()
	r.put("/physarum/instances/"+svc+"/"+id, fmt.Sprintf(`{"ID":%q,"Service":%q,"State":%q}`, id, svc, state))
}

// expected lists the IDs of the events after index that cb selects, as
// the event stream has them.
func (r *rig) expected(cb registry.Callback, index int64) []string {
	r.t.Helper()
	var out []string
	err := events.Stream(r.t.Context(), r.cli, events.Request{EventsRequest: registry.EventsRequest{Index: index}}, func(e registry.Event) error {
		if cb.Selects(e) {
			out = append(out, e.ID)
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *rig) get(id string) registry.Callback {
	r.t.Helper()
	cb, err := r.ctl.GetCallback(r.t.Context(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return cb
}

// waitAccepted waits until the receiver has accepted want, in order
// (repeats allowed: at least once), and returns what it accepted.
func waitAccepted(t *testing.T, rc *receiver, want []string, timeout time.Duration) []string {
	t.Helper()
	var got []string
	eventually.Succeeds(t, timeout, func() error {
		got = rc.accepted()
		seen := map[string]bool{}
		var firsts []string
		for _, id := range got {
			if !seen[id] {
				seen[id] = true
				firsts = append(firsts, id)
			}
		}
		if len(firsts) < len(want) {
			return fmt.Errorf("%d of %d events accepted", len(firsts), len(want))
		}
		if !slices.Equal(firsts, want) {
			t.Fatalf("accepted in the order %v, want %v", firsts, want)
		}
		return nil
	})
	return got
}

func TestDeliversSelectedEventsInOrderSigned(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t)
	w := r.start("w1", callbacks.Config{})
	eventually.True(t, 10*time.Second, "the worker leads", w.leads)
	cb := r.add(rc, registry.Callback{Service: "svc"})
	all := newReceiver(t)
	everything := r.add(all, registry.Callback{})

	r.put("/physarum/services/svc", `{"CpuReq":100}`)
	r.put("/physarum/services/other", `{"CpuReq":100}`)
	r.put("/physarum/desired/svc/physarum", `{"service":"svc","compute":"physarum","number":2}`)
	for i := range 3 {
		id := fmt.Sprintf("svc-%d", i)
		r.instance("svc", id, "starting")
		r.instance("other", id, "running")
		r.instance("svc", id, "running")
	}
	// Two changes in one revision: both delivered, in order.
	if _, err := r.cli.Txn(t.Context()).Then(
		clientv3.OpPut("/physarum/instances/svc/svc-0", `{"ID":"svc-0","Service":"svc","State":"stopping"}`),
		clientv3.OpPut("/physarum/instances/svc/svc-1", `{"ID":"svc-1","Service":"svc","State":"stopping"}`),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	r.put("/physarum/launched/"+uuid1, `{"uuid":"`+uuid1+`","service":"svc","state":"pending"}`)
	r.put("/physarum/launched/"+uuid2, `{"uuid":"`+uuid2+`","service":"other","state":"pending"}`)
	if _, err := r.cli.Delete(t.Context(), "/physarum/instances/svc/svc-2"); err != nil {
		t.Fatal(err)
	}

	want := r.expected(cb, cb.Cursor)
	if len(want) != 12 {
		t.Fatalf("the stream selects %d events for the service (%v), want 12", len(want), want)
	}
	got := waitAccepted(t, rc, want, 20*time.Second)
	if !slices.Equal(got, want) {
		t.Errorf("accepted %v, want each once: %v", got, want)
	}
	wantAll := r.expected(everything, everything.Cursor)
	waitAccepted(t, all, wantAll, 20*time.Second)
	rc.check()
	all.check()
	for _, d := range rc.deliveries() {
		if d.event.Type == registry.EventDeleted && d.event.Key == "svc/svc-2" {
			t.Errorf("a running instance's deletion is %q, want lost", d.event.Type)
		}
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		st := r.get(cb.ID)
		if st.Delivered != int64(len(want)) || st.LastSuccess.IsZero() || st.LastError != "" || st.Pending != 0 {
			return fmt.Errorf("state %+v", st)
		}
		last, _, _ := registry.ParseEventID(want[len(want)-1])
		if st.Cursor != last {
			return fmt.Errorf("cursor %d, want %d", st.Cursor, last)
		}
		return nil
	})
	if n := metric(w.reg, "physarum_callbacks_deliveries_total"); n != float64(len(want)+len(wantAll)) {
		t.Errorf("deliveries_total %v, want %d", n, len(want)+len(wantAll))
	}
	ds := rc.deliveries()
	var lat []time.Duration
	for _, d := range ds {
		lat = append(lat, d.at.Sub(d.event.Time))
	}
	slices.Sort(lat)
	t.Logf("delivery latency (event read to receiver): median %s, max %s over %d deliveries", lat[len(lat)/2], lat[len(lat)-1], len(lat))
}

const (
	uuid1 = "0b6e3a4c-6a3f-4c1e-9d1e-2f7d1d9c0a11"
	uuid2 = "7f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"
)

// A callback for one launched instance gets its record's events and its
// instance's, and nothing else.
func TestInstanceCallbackSelectsItsOwnEvents(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t)
	r.start("w1", callbacks.Config{})
	cb := r.add(rc, registry.Callback{Instance: uuid1})
	for _, st := range []string{"pending", "starting", "running"} {
		r.put("/physarum/launched/"+uuid1, `{"uuid":"`+uuid1+`","service":"svc","state":"`+st+`"}`)
		r.put("/physarum/launched/"+uuid2, `{"uuid":"`+uuid2+`","service":"svc","state":"`+st+`"}`)
		r.instance("svc", uuid1, st)
		r.instance("svc", uuid2, st)
	}
	want := r.expected(cb, cb.Cursor)
	if len(want) != 6 {
		t.Fatalf("%d events selected, want 6", len(want))
	}
	waitAccepted(t, rc, want, 20*time.Second)
	for _, d := range rc.deliveries() {
		if !strings.HasSuffix(d.event.Key, uuid1) {
			t.Errorf("delivered %s %s", d.event.Topic, d.event.Key)
		}
	}
	rc.check()
}

// A receiver that fails three times and then accepts gets the event four
// times, with growing gaps (the schedule's first three waits: 0.1, 0.5
// and 3 s under fast timing), then nothing more; the callback's state
// shows the failures meanwhile and clears them after.
func TestFailuresAreRetriedWithGrowingGapsAndShown(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t)
	posts := 0
	rc.setAnswer(func(int, string) int {
		if posts++; posts <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	r.start("w1", callbacks.Config{})
	cb := r.add(rc, registry.Callback{Service: "svc"})
	r.put("/physarum/services/svc", `{"CpuReq":100}`)
	want := r.expected(cb, cb.Cursor)

	// Meanwhile the state shows the failures.
	eventually.Succeeds(t, 10*time.Second, func() error {
		st := r.get(cb.ID)
		if !strings.Contains(st.LastError, "500") || st.FailingSince.IsZero() || !st.LastSuccess.IsZero() || st.Pending != 1 {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	})
	waitAccepted(t, rc, want, 20*time.Second)
	// Then another event: it arrives once, after the first, which is
	// not delivered again.
	r.put("/physarum/services/svc", `{"CpuReq":200}`)
	want = r.expected(cb, cb.Cursor)
	waitAccepted(t, rc, want, 20*time.Second)
	ds := rc.deliveries()
	if len(ds) != 5 {
		t.Fatalf("%d deliveries, want 4 of the first event and 1 of the second", len(ds))
	}
	var gaps []time.Duration
	for i := 1; i < 4; i++ {
		if ds[i].id != want[0] {
			t.Fatalf("delivery %d is of %s, want %s", i, ds[i].id, want[0])
		}
		gaps = append(gaps, ds[i].at.Sub(ds[i-1].at))
	}
	t.Logf("gaps between attempts: %v", gaps)
	for i, g := range gaps {
		base := []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 3 * time.Second}[i]
		if g < base*8/10 || g > base*12/10+time.Second {
			t.Errorf("gap %d: %s, want about %s", i+1, g, base)
		}
		if i > 0 && g <= gaps[i-1] {
			t.Errorf("gap %d (%s) is not longer than the one before (%s)", i+1, g, gaps[i-1])
		}
	}
	st := r.get(cb.ID)
	if st.LastError != "" || !st.FailingSince.IsZero() || st.Delivered != 2 {
		t.Errorf("after the successes: %+v", st)
	}
	rc.check()
}

// A leader change: the worker that led stops with events pending (its
// receiver refusing them), another takes over and delivers every one
// from the stored cursor, without starting over.
func TestANewLeaderResumesFromTheStoredCursor(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t)
	const first = 10
	accepted := 0
	rc.setAnswer(func(int, string) int {
		if accepted < first {
			accepted++
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	a := r.start("a", callbacks.Config{})
	eventually.True(t, 10*time.Second, "a leads", a.leads)
	b := r.start("b", callbacks.Config{})
	cb := r.add(rc, registry.Callback{Service: "svc"})
	for i := range 30 {
		r.instance("svc", fmt.Sprintf("i%d", i), "running")
	}
	want := r.expected(cb, cb.Cursor)
	eventually.Succeeds(t, 20*time.Second, func() error {
		if st := r.get(cb.ID); st.Delivered != first || st.LastError == "" {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	})
	if b.leads() {
		t.Fatal("b leads while a does")
	}
	a.stop()
	rc.setAnswer(func(int, string) int { return http.StatusOK })
	eventually.True(t, 10*time.Second, "b leads", b.leads)
	got := waitAccepted(t, rc, want, 30*time.Second)
	if !slices.Equal(got, want) {
		t.Errorf("accepted %v, want each event once: %v", got, want)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		if st := r.get(cb.ID); st.Delivered != int64(len(want)) || st.LastError != "" {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	})
	rc.check()
}

// A receiver slower than the events: the callback's queue fills, it
// reads its own stream, and catches up with the others in order.
func TestACallbackBehindReadsItsOwnStream(t *testing.T) {
	r := newRig(t)
	slow := newReceiver(t)
	release := make(chan struct{})
	slow.gate = release
	fast := newReceiver(t)
	r.start("w1", callbacks.Config{Queue: 3})
	cbSlow := r.add(slow, registry.Callback{Service: "svc"})
	cbFast := r.add(fast, registry.Callback{Service: "svc"})
	for i := range 40 {
		r.instance("svc", fmt.Sprintf("i%d", i), "running")
	}
	want := r.expected(cbFast, cbFast.Cursor)
	waitAccepted(t, fast, want, 20*time.Second)
	if st := r.get(cbSlow.ID); st.Delivered != 0 {
		t.Fatalf("the slow receiver accepted %d events already", st.Delivered)
	}
	close(release)
	// More events while it catches up.
	for i := range 10 {
		r.instance("svc", fmt.Sprintf("j%d", i), "running")
	}
	want = r.expected(cbSlow, cbSlow.Cursor)
	got := waitAccepted(t, slow, want, 30*time.Second)
	if !slices.Equal(got, want) {
		t.Errorf("accepted %v, want each once: %v", got, want)
	}
	slow.check()
	fast.check()
}

// A callback that fails past DisableAfter is disabled, says why, and gets
// nothing more; a deleted one gets nothing more either.
func TestDisabledAndDeletedCallbacksStop(t *testing.T) {
	r := newRig(t)
	failing := newReceiver(t)
	failing.setAnswer(func(int, string) int { return http.StatusBadGateway })
	ok := newReceiver(t)
	w := r.start("w1", callbacks.Config{Schedule: []time.Duration{100 * time.Millisecond}, DisableAfter: 5 * time.Second})
	cbFail := r.add(failing, registry.Callback{Service: "svc"})
	cbOK := r.add(ok, registry.Callback{Service: "svc"})
	r.put("/physarum/services/svc", `{"CpuReq":100}`)
	eventually.Succeeds(t, 20*time.Second, func() error {
		st := r.get(cbFail.ID)
		if !st.Disabled || !strings.Contains(st.DisabledReason, "502") {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	})
	attempts := len(failing.deliveries())
	if attempts < 3 {
		t.Errorf("disabled after %d attempts", attempts)
	}
	// The counter is counted just after the record is written, which the
	// wait above saw: poll it too.
	eventually.Succeeds(t, 5*time.Second, func() error {
		if n := metric(w.reg, "physarum_callbacks_disabled_total"); n != 1 {
			return fmt.Errorf("disabled_total %v", n)
		}
		return nil
	})
	if _, err := r.ctl.DeleteCallback(t.Context(), cbOK.ID); err != nil {
		t.Fatal(err)
	}
	// A callback added after them gets the next event; the disabled
	// and the deleted do not.
	later := newReceiver(t)
	cbLater := r.add(later, registry.Callback{Service: "svc"})
	r.put("/physarum/services/svc", `{"CpuReq":200}`)
	waitAccepted(t, later, r.expected(cbLater, cbLater.Cursor), 20*time.Second)
	if n := len(failing.deliveries()); n != attempts {
		t.Errorf("the disabled callback got %d more deliveries", n-attempts)
	}
	if n := len(ok.deliveries()); n != 1 {
		t.Errorf("the deleted callback got %d deliveries, want 1 (before its deletion)", n)
	}
	if resp, _ := r.cli.Get(t.Context(), control.PrefixCallbackState+cbOK.ID, clientv3.WithCountOnly()); resp.Count != 0 {
		t.Error("the worker wrote the deleted callback's state back")
	}
}

// A cursor etcd has compacted away: the worker skips to the oldest index
// kept, says so in the callback's state, and delivers what follows.
func TestACompactedCursorIsSkippedAndShown(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t)
	cb := r.add(rc, registry.Callback{Service: "svc"})
	for i := range 5 {
		r.instance("svc", fmt.Sprintf("gone-%d", i), "running")
	}
	resp, err := r.cli.Get(t.Context(), "/physarum/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.cli.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	r.start("w1", callbacks.Config{})
	r.instance("svc", "kept", "running")
	want := r.expected(cb, resp.Header.Revision)
	waitAccepted(t, rc, want, 20*time.Second)
	st := r.get(cb.ID)
	if !strings.Contains(st.Skipped, "compacted") || !strings.Contains(st.Skipped, fmt.Sprint(resp.Header.Revision)) {
		t.Errorf("skipped %q", st.Skipped)
	}
	rc.check()
}
