package events_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/cluster"
	"github.com/physarum-p2p/physarum/registry-service/cluster/clustertest"
	"github.com/physarum-p2p/physarum/registry-service/events"
)

// Streams against a real embedded etcd, shared by the tests (which run
// one at a time: each reads the whole store's log).

var shared = clustertest.New("events-test")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(stopEtcdAfterRun{m},
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

type stopEtcdAfterRun struct{ m *testing.M }

func (r stopEtcdAfterRun) Run() int {
	defer shared.Close()
	return r.m.Run()
}

// member is the shared etcd member.
func member(t *testing.T) *cluster.Member {
	t.Helper()
	return shared.Member(t)
}

// etcd returns a client of the shared etcd's endpoints.
func etcd(t *testing.T) *clientv3.Client { t.Helper(); return member(t).Client() }

func rev(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), "/physarum/")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func mustPut(t *testing.T, cli *clientv3.Client, key, value string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	resp, err := cli.Put(t.Context(), key, value, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func mustDelete(t *testing.T, cli *clientv3.Client, key string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	resp, err := cli.Delete(t.Context(), key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// history writes a mix of changes, some several to a revision, and
// returns the revision before them.
func history(t *testing.T, cli *clientv3.Client, tag string) int64 {
	t.Helper()
	before := rev(t, cli)
	svc := "/physarum/services/" + tag
	mustPut(t, cli, svc, `{"Image":"v1"}`)
	mustPut(t, cli, svc, `{"Image":"v2"}`)
	mustPut(t, cli, "/physarum/leases/"+tag, "bookkeeping")
	if _, err := cli.Txn(t.Context()).Then(
		clientv3.OpPut("/physarum/desired/"+tag+"/physarum", `{"Number":2}`),
		clientv3.OpPut("/physarum/names/"+tag, "bookkeeping"),
		clientv3.OpPut("/physarum/instances/"+tag+"/"+tag+"-1", inst("starting")),
		clientv3.OpPut("/physarum/instances/"+tag+"/"+tag+"-2", inst("starting")),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	mustPut(t, cli, "/physarum/instances/"+tag+"/"+tag+"-1", inst("running"))
	mustPut(t, cli, "/physarum/computes/"+tag, `{"Name":"x"}`)
	if _, err := cli.Txn(t.Context()).Then(
		clientv3.OpDelete("/physarum/instances/"+tag+"/", clientv3.WithPrefix()),
		clientv3.OpDelete("/physarum/desired/"+tag+"/", clientv3.WithPrefix()),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	mustDelete(t, cli, svc)
	return before
}

// read runs a stream that does not follow and returns what it got.
func read(t *testing.T, s *events.Streamer, req events.Request) ([]registry.Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got []registry.Event
	err := s.Stream(ctx, req, func(e registry.Event) error {
		got = append(got, e)
		return nil
	})
	return got, err
}

// follower reads a following stream in the background.
type follower struct {
	mu     sync.Mutex
	got    []registry.Event
	err    error
	done   chan struct{}
	cancel context.CancelFunc
}

func follow(t *testing.T, s *events.Streamer, req events.Request) *follower {
	t.Helper()
	req.Follow = true
	ctx, cancel := context.WithCancel(t.Context())
	f := &follower{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(f.done)
		err := s.Stream(ctx, req, func(e registry.Event) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.got = append(f.got, e)
			return nil
		})
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
	}()
	t.Cleanup(func() { f.stop() })
	return f
}

func (f *follower) stop() error {
	f.cancel()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// events returns what was delivered so far, heartbeats left out.
func (f *follower) events() []registry.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return changes(f.got)
}

func (f *follower) all() []registry.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func changes(evs []registry.Event) []registry.Event {
	var out []registry.Event
	for _, e := range evs {
		if e.Type != registry.EventHeartbeat {
			out = append(out, e)
		}
	}
	return out
}

func ids(evs []registry.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

func TestStreamDeliversEveryChangeFromAnIndexOnce(t *testing.T) {
	cli := etcd(t)
	s := events.New(cli, events.Config{})
	before := history(t, cli, "resume")
	all, err := read(t, s, events.Request{EventsRequest: registry.EventsRequest{Index: before}})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 || all[0].Type != registry.EventHeartbeat || all[0].Index != before {
		t.Fatalf("first call %+v, want a heartbeat at %d", all, before)
	}
	all = changes(all)
	want := []string{"service created resume", "service updated resume", "desired created resume/physarum",
		"instance created resume/resume-1", "instance created resume/resume-2", "instance updated resume/resume-1",
		"compute created resume", "instance lost resume/resume-1", "instance lost resume/resume-2",
		"desired deleted resume/physarum", "service deleted resume"}
	var got []string
	for _, e := range all {
		got = append(got, e.Topic+" "+e.Type+" "+e.Key)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ids := ids(all); !slices.IsSortedFunc(all, func(a, b registry.Event) int { return int(a.Index - b.Index) }) {
		t.Fatalf("out of order: %v", ids)
	}
	// Resuming at any index, or after any event's id, delivers the rest:
	// every later event once, in order, with the same ids.
	for i, e := range all {
		rest, err := read(t, s, events.Request{EventsRequest: registry.EventsRequest{Index: e.Index}})
		if err != nil {
			t.Fatal(err)
		}
		var wantIDs []string
		for _, later := range all[i:] {
			if later.Index > e.Index {
				wantIDs = append(wantIDs, later.ID)
			}
		}
		if got := ids(changes(rest)); !slices.Equal(got, wantIDs) {
			t.Errorf("resume at index %d: %v, want %v", e.Index, got, wantIDs)
		}
		rest, err = read(t, s, events.Request{EventsRequest: registry.EventsRequest{After: e.ID}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(changes(rest)), ids(all[i+1:]); !slices.Equal(got, want) {
			t.Errorf("resume after %s: %v, want %v", e.ID, got, want)
		}
	}
	// The topics filter; ids stay those of the whole log.
	only, err := read(t, s, events.Request{EventsRequest: registry.EventsRequest{Index: before, Topics: []string{"instance:resume", "compute"}}})
	if err != nil {
		t.Fatal(err)
	}
	var wantIDs []string
	for _, e := range all {
		if e.Topic == registry.TopicInstance || e.Topic == registry.TopicCompute {
			wantIDs = append(wantIDs, e.ID)
		}
	}
	if got := ids(changes(only)); !slices.Equal(got, wantIDs) {
		t.Errorf("instance and compute events: %v, want %v", got, wantIDs)
	}
}

func TestStreamFollowsWithHeartbeats(t *testing.T) {
	cli := etcd(t)
	reg := prometheus.NewRegistry()
	s := events.New(cli, events.Config{Registerer: reg})
	defer s.Close()
	start := rev(t, cli)
	f := follow(t, s, events.Request{Heartbeat: 100 * time.Millisecond})
	eventually.True(t, 10*time.Second, "the first heartbeat", func() bool { return len(f.all()) > 0 })
	if first := f.all()[0]; first.Type != registry.EventHeartbeat || first.Index < start {
		t.Fatalf("first %+v, want a heartbeat at the store's index (%d or more)", first, start)
	}
	if got := value(t, reg, "physarum_events_stream_readers"); got != 1 {
		t.Errorf("stream_readers = %v, want 1", got)
	}
	r := mustPut(t, cli, "/physarum/services/follow", `{}`)
	eventually.True(t, 10*time.Second, "the change", func() bool { return len(f.events()) == 1 })
	if e := f.events()[0]; e.Index != r || e.ID != fmt.Sprintf("%d-0", r) || e.Type != registry.EventCreated {
		t.Errorf("got %+v, want service created at %d", e, r)
	}
	// A quiet store is heard as heartbeats at its revision, also when
	// what changed is not a topic's (a lease's bookkeeping).
	r = mustPut(t, cli, "/physarum/leases/follow", "x")
	eventually.True(t, 10*time.Second, "a heartbeat at "+fmt.Sprint(r), func() bool {
		all := f.all()
		last := all[len(all)-1]
		return last.Type == registry.EventHeartbeat && last.Index >= r
	})
	if got := value(t, reg, "physarum_events_emitted_total"); got != 1 {
		t.Errorf("emitted_total = %v, want 1", got)
	}
	if err := f.stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("stopped stream: %v", err)
	}
	if got := value(t, reg, "physarum_events_stream_readers"); got != 0 {
		t.Errorf("stream_readers after = %v, want 0", got)
	}
}

// value sums the metrics of one name in reg.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return sum
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestStreamLostInstance(t *testing.T) {
	cli := etcd(t)
	s := events.New(cli, events.Config{})
	lease, err := cli.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	node := "/physarum/nodes/12D3KooWlost"
	mustPut(t, cli, node, `{"Name":"lost"}`, clientv3.WithLease(lease.ID))
	mustPut(t, cli, "/physarum/instances/lost/lost-1", inst("running"), clientv3.WithLease(lease.ID))
	mustPut(t, cli, "/physarum/instances/lost/lost-2", inst("stopping"), clientv3.WithLease(lease.ID))
	f := follow(t, s, events.Request{EventsRequest: registry.EventsRequest{Topics: []string{"instance:lost", "node"}}})
	eventually.True(t, 10*time.Second, "the stream", func() bool { return len(f.all()) > 0 })
	// The node's lease runs out (revoked here, as etcd does at its TTL).
	if _, err := cli.Revoke(t.Context(), lease.ID); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "three events", func() bool { return len(f.events()) == 3 })
	got := f.events()
	var lines []string
	for _, e := range got {
		lines = append(lines, e.Topic+" "+e.Type+" "+e.Key+" "+string(e.Object))
	}
	if !slices.Contains(lines, "instance lost lost/lost-1 "+inst("running")) ||
		!slices.Contains(lines, "instance deleted lost/lost-2 "+inst("stopping")) ||
		!slices.Contains(lines, `node deleted 12D3KooWlost {"Name":"lost"}`) {
		t.Errorf("got\n%s", strings.Join(lines, "\n"))
	}
	if got[0].Index != got[2].Index {
		t.Errorf("the lease's deletions in several revisions: %v", ids(got))
	}
}

func TestStreamCompacted(t *testing.T) {
	cli := etcd(t)
	reg := prometheus.NewRegistry()
	s := events.New(cli, events.Config{Registerer: reg})
	defer s.Close()
	before := history(t, cli, "compact")
	compactAt := rev(t, cli) - 3
	if _, err := cli.Compact(t.Context(), compactAt, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for _, req := range []registry.EventsRequest{{Index: before}, {Index: compactAt - 1}, {After: fmt.Sprintf("%d-0", compactAt)}} {
		got, err := read(t, s, events.Request{EventsRequest: req})
		ge, ok := errors.AsType[*registry.GoneError](err)
		if !ok || ge.Oldest != compactAt || len(got) != 0 {
			t.Fatalf("%+v: %v (calls %v), want gone with oldest %d", req, err, got, compactAt)
		}
		if wire.CodeOf(err) != wire.CodeGone {
			t.Errorf("code %q", wire.CodeOf(err))
		}
	}
	got, err := read(t, s, events.Request{EventsRequest: registry.EventsRequest{Index: compactAt}})
	if err != nil || len(changes(got)) == 0 {
		t.Fatalf("from the oldest index: %v, %v", got, err)
	}
	if n := value(t, reg, "physarum_events_gone_total"); n != 3 {
		t.Errorf("gone_total = %v, want 3", n)
	}
}

func TestStreamRefusesBadRequests(t *testing.T) {
	cli := etcd(t)
	s := events.New(cli, events.Config{})
	for _, req := range []registry.EventsRequest{
		{Index: -1}, {Topics: []string{"instances"}}, {After: "x"}, {Index: rev(t, cli) + 100},
	} {
		got, err := read(t, s, events.Request{EventsRequest: req})
		if wire.CodeOf(err) != wire.CodeBadRequest || len(got) != 0 {
			t.Errorf("%+v: %v, %v; want bad_request and no call", req, err, got)
		}
	}
	// From now, not following: nothing to deliver but the heartbeat.
	got, err := read(t, s, events.Request{})
	if err != nil || len(got) != 1 || got[0].Type != registry.EventHeartbeat {
		t.Errorf("from now: %v, %v", got, err)
	}
}

// fn's error ends the stream and is returned as it is.
func TestStreamReturnsFnError(t *testing.T) {
	cli := etcd(t)
	before := history(t, cli, "fnerr")
	stop := errors.New("enough")
	n := 0
	err := events.Stream(t.Context(), cli, events.Request{EventsRequest: registry.EventsRequest{Index: before, Follow: true}},
		func(e registry.Event) error {
			if n++; n == 3 {
				return stop
			}
			return nil
		})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("%v after %d calls", err, n)
	}
}

// The in-process client (what Control reads with) serves streams too.
func TestStreamOnTheInProcessClient(t *testing.T) {
	m := member(t)
	s := events.New(m.KV(), events.Config{})
	f := follow(t, s, events.Request{Heartbeat: 100 * time.Millisecond})
	eventually.True(t, 10*time.Second, "the first heartbeat", func() bool { return len(f.all()) > 0 })
	r := mustPut(t, m.KV(), "/physarum/services/local", `{}`)
	eventually.True(t, 10*time.Second, "the change", func() bool { return len(f.events()) == 1 && f.events()[0].Index == r })
	eventually.True(t, 10*time.Second, "heartbeats", func() bool {
		all := f.all()
		return all[len(all)-1].Type == registry.EventHeartbeat && all[len(all)-1].Index >= r
	})
}

// A watch that ends (a member lost its leader) is opened again from the
// last revision delivered: nothing skipped, nothing repeated, also
// within a revision of several events.
func TestStreamResumesWhenItsWatchEnds(t *testing.T) {
	cli := etcd(t)
	reg := prometheus.NewRegistry()
	cut := events.New(cli, events.Config{Registerer: reg})
	defer cut.Close()
	cut.CutWatchesEvery(1)
	whole := events.New(cli, events.Config{})
	before := history(t, cli, "cut1")
	f := follow(t, cut, events.Request{EventsRequest: registry.EventsRequest{Index: before}})
	// Changes one at a time, each seen before the next: each in a
	// watch of its own.
	for i := range 5 {
		r := mustPut(t, cli, fmt.Sprintf("/physarum/services/cut-%d", i), `{}`)
		eventually.True(t, 10*time.Second, fmt.Sprint("the change at ", r), func() bool {
			got := f.events()
			return len(got) > 0 && got[len(got)-1].Index == r
		})
	}
	history(t, cli, "cut2")
	end := rev(t, cli)
	want, err := read(t, whole, events.Request{EventsRequest: registry.EventsRequest{Index: before}})
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 20*time.Second, "every event", func() bool {
		got := f.events()
		return len(got) > 0 && got[len(got)-1].Index >= end
	})
	if got, want := ids(f.events()), ids(changes(want)); !slices.Equal(got, want) {
		t.Errorf("through cut watches\n%v\nwant\n%v", got, want)
	}
	if n := value(t, reg, "physarum_events_watch_restarts_total"); n < 5 {
		t.Errorf("watch_restarts_total = %v: the watches were not cut", n)
	}
}
