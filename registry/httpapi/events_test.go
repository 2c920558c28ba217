package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// fakeEvents is a Controller that is also an event source: its Events
// records the request and runs stream.
type fakeEvents struct {
	*fakeControl
	stream func(ctx context.Context, req registry.EventsRequest, fn func(registry.Event) error) error

	mu   sync.Mutex
	reqs []registry.EventsRequest
	ctxs []context.Context
}

func (f *fakeEvents) Events(ctx context.Context, req registry.EventsRequest, fn func(registry.Event) error) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.ctxs = append(f.ctxs, ctx)
	f.mu.Unlock()
	return f.stream(ctx, req, fn)
}

func (f *fakeEvents) requests() []registry.EventsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

var t0 = time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)

// canned streams a heartbeat at 40, then evs, then returns err.
func canned(err error, evs ...registry.Event) func(context.Context, registry.EventsRequest, func(registry.Event) error) error {
	return func(_ context.Context, _ registry.EventsRequest, fn func(registry.Event) error) error {
		if err := fn(registry.Event{Type: registry.EventHeartbeat, Index: 40, Time: t0}); err != nil {
			return err
		}
		for _, e := range evs {
			if err := fn(e); err != nil {
				return err
			}
		}
		return err
	}
}

var (
	ev41 = registry.Event{ID: "41-0", Index: 41, Time: t0, Topic: "instance", Type: "updated", Key: "hello/hello-1",
		Object: json.RawMessage(`{"ID":"hello-1","State":"running"}`)}
	ev42 = registry.Event{ID: "42-1", Index: 42, Time: t0, Topic: "node", Type: "deleted", Key: "12D3KooW"}
)

func TestEventsNDJSON(t *testing.T) {
	f := &fakeEvents{fakeControl: newFake(), stream: canned(nil, ev41, ev42)}
	w := send(t, New(f, Options{}), http.MethodGet, "/v1/events?index=40&topic=instance:hello&topic=node,service&follow=false", "")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %q: %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	want := `{"type":"heartbeat","index":40,"time":"2025-05-06T07:08:09Z"}
{"id":"41-0","index":41,"time":"2025-05-06T07:08:09Z","topic":"instance","type":"updated","key":"hello/hello-1","object":{"ID":"hello-1","State":"running"}}
{"id":"42-1","index":42,"time":"2025-05-06T07:08:09Z","topic":"node","type":"deleted","key":"12D3KooW"}
`
	if w.Body.String() != want {
		t.Errorf("body\n%s\nwant\n%s", w.Body, want)
	}
	got := f.requests()
	if len(got) != 1 || got[0].Index != 40 || got[0].Follow || !slices.Equal(got[0].Topics, []string{"instance:hello", "node", "service"}) {
		t.Errorf("request %+v", got)
	}
	// Defaults: from now, following, every topic.
	send(t, New(f, Options{}), http.MethodGet, "/v1/events", "")
	if got := f.requests()[1]; got.Index != 0 || !got.Follow || got.Topics != nil || got.After != "" {
		t.Errorf("defaults: %+v", got)
	}
}

func TestEventsSSE(t *testing.T) {
	f := &fakeEvents{fakeControl: newFake(), stream: canned(nil, ev41)}
	w := send(t, New(f, Options{}), http.MethodGet, "/v1/events?index=40", "", "Accept", "text/html, text/event-stream;q=0.9")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %q: %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	want := "event: heartbeat\nid: 40\ndata: {\"type\":\"heartbeat\",\"index\":40,\"time\":\"2025-05-06T07:08:09Z\"}\n\n" +
		"id: 41-0\ndata: " + `{"id":"41-0","index":41,"time":"2025-05-06T07:08:09Z","topic":"instance","type":"updated","key":"hello/hello-1","object":{"ID":"hello-1","State":"running"}}` + "\n\n"
	if w.Body.String() != want {
		t.Errorf("body\n%q\nwant\n%q", w.Body, want)
	}
	// A browser reconnecting sends the last id it saw: an event's, or a
	// heartbeat's index; it wins over the URL's index.
	for id, want := range map[string]registry.EventsRequest{
		"41-0": {Index: 40, After: "41-0", Follow: true},
		"57":   {Index: 57, Follow: true},
	} {
		send(t, New(f, Options{}), http.MethodGet, "/v1/events?index=40", "", "Accept", "text/event-stream", "Last-Event-ID", id)
		reqs := f.requests()
		if got := reqs[len(reqs)-1]; got.Index != want.Index || got.After != want.After || got.Follow != want.Follow {
			t.Errorf("Last-Event-ID %s: %+v, want %+v", id, got, want)
		}
	}
}

func TestEventsGoneAndFailures(t *testing.T) {
	f := &fakeEvents{fakeControl: newFake()}
	h := New(f, Options{})
	f.stream = func(context.Context, registry.EventsRequest, func(registry.Event) error) error {
		return fmt.Errorf("stream: %w", &registry.GoneError{Index: 5, Oldest: 1234})
	}
	w := send(t, h, http.MethodGet, "/v1/events?index=5", "")
	var gone goneAnswer
	answer(t, w, http.StatusGone, &gone)
	if gone.Code != wire.CodeGone || gone.OldestIndex != 1234 || !strings.Contains(gone.Message, "oldest index still available is 1234") {
		t.Errorf("410 answer %+v", gone)
	}
	f.stream = func(context.Context, registry.EventsRequest, func(registry.Event) error) error {
		return wire.Errorf(wire.CodeUnavailable, "etcd is down")
	}
	refusal(t, send(t, h, http.MethodGet, "/v1/events", ""), http.StatusServiceUnavailable, wire.CodeUnavailable)
	// Once the stream has started, a failure is its last line.
	f.stream = canned(&registry.GoneError{Index: 40, Oldest: 50}, ev41)
	w = send(t, h, http.MethodGet, "/v1/events", "")
	lines := strings.Split(strings.TrimSpace(w.Body.String()), "\n")
	if w.Code != http.StatusOK || len(lines) != 3 ||
		!strings.HasPrefix(lines[2], `{"type":"error","code":"gone","message":"index 40 is compacted away;`) || !strings.HasSuffix(lines[2], `"oldest_index":50}`) {
		t.Errorf("%d\n%s", w.Code, w.Body)
	}
}

func TestEventsBadQuery(t *testing.T) {
	f := &fakeEvents{fakeControl: newFake(), stream: canned(nil)}
	h := New(f, Options{})
	for _, q := range []string{
		"index=-1", "index=x", "index=1.5", "index=99999999999999999999", "index=1&index=2", "index=+3",
		"topic=instances", "topic=instance:hello&topic=nodes", "follow=maybe", "follow=true&follow=false", "since=3",
		"topic=" + strings.Repeat("node,", maxTopics+1),
	} {
		msg := refusal(t, send(t, h, http.MethodGet, "/v1/events?"+q, ""), http.StatusBadRequest, wire.CodeBadRequest)
		if msg == "" {
			t.Errorf("%s: no message", q)
		}
	}
	refusal(t, send(t, h, http.MethodGet, "/v1/events", "", "Last-Event-ID", "x-1"), http.StatusBadRequest, wire.CodeBadRequest)
	refusal(t, send(t, h, http.MethodPost, "/v1/events", "{}"), http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d bad requests reached the source", n)
	}
}

func TestEventsServedWhere(t *testing.T) {
	// A Controller that is no event source, and an allocator's connector:
	// 404 (the connector's says where events are).
	refusal(t, send(t, New(newFake(), Options{}), http.MethodGet, "/v1/events", ""), http.StatusNotFound, wire.CodeNotFound)
	f := &fakeEvents{fakeControl: newFake(), stream: canned(nil)}
	msg := refusal(t, send(t, New(f, Options{NodeScope: "n1"}), http.MethodGet, "/v1/events", ""), http.StatusNotFound, wire.CodeNotFound)
	if !strings.Contains(msg, "registry-service") {
		t.Errorf("connector's 404: %s", msg)
	}
	// Reads need the token unless PublicRead.
	refusal(t, send(t, New(f, Options{Token: "s3cret"}), http.MethodGet, "/v1/events", ""), http.StatusUnauthorized, CodeUnauthorized)
	if w := send(t, New(f, Options{Token: "s3cret"}), http.MethodGet, "/v1/events", "", "Authorization", "Bearer s3cret"); w.Code != http.StatusOK {
		t.Errorf("with the token: %d %s", w.Code, w.Body)
	}
	if w := send(t, New(f, Options{Token: "s3cret", PublicRead: true}), http.MethodGet, "/v1/events", ""); w.Code != http.StatusOK {
		t.Errorf("public read: %d %s", w.Code, w.Body)
	}
	// HEAD answers the stream's headers alone.
	w := send(t, New(f, Options{}), http.MethodHead, "/v1/events", "")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-ndjson" || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
}

// On a real server whose read and write timeouts are far shorter than
// the stream: the stream outlives them, each line arrives as it is sent,
// and a reader going away ends the source's context.
func TestEventsStreamOutlivesServerTimeouts(t *testing.T) {
	release := make(chan struct{})
	f := &fakeEvents{fakeControl: newFake()}
	f.stream = func(ctx context.Context, _ registry.EventsRequest, fn func(registry.Event) error) error {
		if err := fn(registry.Event{Type: registry.EventHeartbeat, Index: 1, Time: t0}); err != nil {
			return err
		}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := int64(2); ; i++ {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
			if err := fn(registry.Event{ID: fmt.Sprintf("%d-0", i), Index: i, Time: t0, Topic: "service", Type: "created", Key: "s"}); err != nil {
				return err
			}
			if i == 20 {
				<-release
			}
		}
	}
	srv := httptest.NewUnstartedServer(New(f, Options{}))
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var n int
	for n < 20 && sc.Scan() {
		var e registry.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		if e.Index != int64(n+1) {
			t.Fatalf("line %d has index %d", n, e.Index)
		}
		n++
	}
	if n != 20 {
		t.Fatalf("%d lines over about a second, then %v", n, sc.Err())
	}
	_ = resp.Body.Close()
	close(release)
	eventually.True(t, 10*time.Second, "the source's context to end", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return errors.Is(f.ctxs[0].Err(), context.Canceled)
	})
	_, _ = io.Copy(io.Discard, resp.Body)
}

// A graceful shutdown ends the streams at once instead of waiting for
// them.
func TestEventsEndOnShutdown(t *testing.T) {
	f := &fakeEvents{fakeControl: newFake()}
	f.stream = func(ctx context.Context, _ registry.EventsRequest, fn func(registry.Event) error) error {
		if err := fn(registry.Event{Type: registry.EventHeartbeat, Index: 1, Time: t0}); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}
	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	began := time.Now()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a stream open: %v after %s", err, time.Since(began))
	}
}
