package gateway_test

import (
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

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/proxy/forward"
	"github.com/physarum-p2p/physarum/proxy/gateway"
	"github.com/physarum-p2p/physarum/proxy/router"
	"github.com/physarum-p2p/physarum/registry"
)

// The gateway's own decisions, on a fake router and a fake transport:
// which failures go to the next instance, and which status each error
// becomes.

// fakePicker hands out its instances in order, skipping those a request
// failed on (as the router takes them out of rotation), or fails with err.
type fakePicker struct {
	mu        sync.Mutex
	instances []string
	err       error
	failed    map[string]bool
	done      []string // "<instance> ok" or "<instance> failed", in order
	picks     int
}

func (p *fakePicker) Pick(ctx context.Context, service string) (*router.Target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.picks++
	if p.err != nil {
		return nil, p.err
	}
	for _, name := range p.instances {
		if p.failed[name] {
			continue
		}
		return router.NewTarget(peer.ID(name), registry.Instance{ID: name, Service: service}, func(failed bool) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if failed {
				p.failed[name] = true
				p.done = append(p.done, name+" failed")
			} else {
				p.done = append(p.done, name+" ok")
			}
		}), nil
	}
	return nil, fmt.Errorf("%w: %s: every instance failed", router.ErrAllocation, service)
}

func (p *fakePicker) Known(service string) bool { return !errors.Is(p.err, router.ErrUnknownService) }

func (p *fakePicker) outcomes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.done)
}

// fakeForwarder does to each request what its instance's behaviour says.
type fakeForwarder struct {
	mu        sync.Mutex
	behaviour map[string]func(w http.ResponseWriter) error
	sent      []string // "<instance> <uri>", in order
}

func (f *fakeForwarder) Forward(w http.ResponseWriter, r *http.Request, p peer.ID, uri string) error {
	f.mu.Lock()
	f.sent = append(f.sent, string(p)+" "+uri)
	do := f.behaviour[string(p)]
	f.mu.Unlock()
	return do(w)
}

func (f *fakeForwarder) forwarded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

// What an instance does with a request (see forward.Transport.Forward).
var (
	answers = func(w http.ResponseWriter) error {
		w.WriteHeader(http.StatusOK)
		_, err := io.WriteString(w, "hello")
		return err
	}
	notSent = func(w http.ResponseWriter) error {
		return fmt.Errorf("open stream: %w", forward.ErrNotSent)
	}
	diesBeforeAnswering = func(w http.ResponseWriter) error {
		return fmt.Errorf("forward: %w: stream reset", forward.ErrNoResponse)
	}
	timesOut = func(w http.ResponseWriter) error {
		forward.WriteError(w, http.StatusGatewayTimeout, wire.CodeTimeout, "the instance did not answer in time")
		return errors.New("read response: i/o timeout")
	}
)

type testGateway struct {
	gw      *gateway.Gateway
	picker  *fakePicker
	fwd     *fakeForwarder
	metrics *prometheus.Registry
}

// newGateway returns a gateway on instances named in behaviour, picked in
// the order of names.
func newGateway(t *testing.T, cfg gateway.Config, names []string, behaviour map[string]func(http.ResponseWriter) error) *testGateway {
	t.Helper()
	tg := &testGateway{
		picker:  &fakePicker{instances: names, failed: map[string]bool{}},
		fwd:     &fakeForwarder{behaviour: behaviour},
		metrics: prometheus.NewRegistry(),
	}
	cfg.Registerer = tg.metrics
	tg.gw = gateway.New(tg.picker, tg.fwd, cfg)
	t.Cleanup(tg.gw.Close)
	return tg
}

// get sends GET path to the gateway.
func (tg *testGateway) get(path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	tg.gw.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

// counter reads a counter of the gateway's metrics with the labels given
// (0 when absent).
func (tg *testGateway) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := tg.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// decodeError decodes an error the gateway wrote.
func decodeError(t *testing.T, w *httptest.ResponseRecorder) wire.Error {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, body %q", ct, w.Body)
	}
	var e wire.Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return e
}

func TestARequestTheInstanceNeverGotGoesToTheNextInstance(t *testing.T) {
	for name, fails := range map[string]func(http.ResponseWriter) error{
		"not sent":                       notSent,
		"idempotent, no answer, no body": diesBeforeAnswering,
	} {
		t.Run(name, func(t *testing.T) {
			tg := newGateway(t, gateway.Config{}, []string{"a", "b"},
				map[string]func(http.ResponseWriter) error{"a": fails, "b": answers})
			w := tg.get("/svc/x?y=1")
			if w.Code != http.StatusOK || w.Body.String() != "hello" {
				t.Fatalf("got %d %q, want 200 from b", w.Code, w.Body)
			}
			if got, want := tg.fwd.forwarded(), []string{"a /x?y=1", "b /x?y=1"}; !slices.Equal(got, want) {
				t.Fatalf("forwarded %q, want %q", got, want)
			}
			if got, want := tg.picker.outcomes(), []string{"a failed", "b ok"}; !slices.Equal(got, want) {
				t.Fatalf("told the router %q, want %q", got, want)
			}
			if n := tg.counter(t, "physarum_proxy_retries_total", map[string]string{"service": "svc"}); n != 1 {
				t.Fatalf("retries_total %v, want 1", n)
			}
		})
	}
}

func TestAnInstanceThatTimedOutIs504AndTheRequestIsNotSentAgain(t *testing.T) {
	tg := newGateway(t, gateway.Config{}, []string{"a", "b"},
		map[string]func(http.ResponseWriter) error{"a": timesOut, "b": answers})
	w := tg.get("/svc/")
	if w.Code != http.StatusGatewayTimeout || decodeError(t, w).Code != wire.CodeTimeout {
		t.Fatalf("got %d %q, want 504 timeout", w.Code, w.Body)
	}
	if got, want := tg.fwd.forwarded(), []string{"a /"}; !slices.Equal(got, want) {
		t.Fatalf("forwarded %q, want %q", got, want)
	}
	if got, want := tg.picker.outcomes(), []string{"a failed"}; !slices.Equal(got, want) {
		t.Fatalf("told the router %q, want %q", got, want)
	}
}

func TestAnInstanceAnsweringIsNotTakenOutOfRotation(t *testing.T) {
	tg := newGateway(t, gateway.Config{}, []string{"a"}, map[string]func(http.ResponseWriter) error{
		"a": func(w http.ResponseWriter) error {
			forward.WriteError(w, http.StatusInternalServerError, wire.CodeInternal, "the service's own error")
			return nil
		}})
	if w := tg.get("/svc/"); w.Code != http.StatusInternalServerError {
		t.Fatalf("got %d %q, want the instance's 500", w.Code, w.Body)
	}
	if got, want := tg.picker.outcomes(), []string{"a ok"}; !slices.Equal(got, want) {
		t.Fatalf("told the router %q, want %q", got, want)
	}
}

func TestNoInstanceReachedAfterAttemptsIs502(t *testing.T) {
	tg := newGateway(t, gateway.Config{Attempts: 3}, []string{"a", "b", "c", "d"},
		map[string]func(http.ResponseWriter) error{"a": notSent, "b": notSent, "c": notSent, "d": answers})
	w := tg.get("/svc/")
	if e := decodeError(t, w); w.Code != http.StatusBadGateway || e.Code != wire.CodeUnavailable ||
		!strings.Contains(e.Message, "after 3 attempts") {
		t.Fatalf("got %d %+v, want 502 unavailable after 3 attempts", w.Code, e)
	}
	if got, want := tg.fwd.forwarded(), []string{"a /", "b /", "c /"}; !slices.Equal(got, want) {
		t.Fatalf("forwarded %q, want %q", got, want)
	}
}

func TestPickErrorsBecomeStatuses(t *testing.T) {
	for _, tc := range []struct {
		err     error
		status  int
		code    string
		message string // part of the message
	}{
		{fmt.Errorf("%w %q", router.ErrUnknownService, "svc"), http.StatusNotFound, wire.CodeNotFound, `unknown service "svc"`},
		{fmt.Errorf("service %q %w: its proxy runs in client mode", "svc", router.ErrNotServing), http.StatusNotFound, wire.CodeNotFound, "client mode"},
		{fmt.Errorf("%w: svc: no node can run service svc: no capacity", router.ErrAllocation), http.StatusServiceUnavailable, wire.CodeUnavailable, "no node can run service svc: no capacity"},
		{fmt.Errorf("%w: svc: waiting for a new instance: %w", router.ErrAllocation, context.DeadlineExceeded), http.StatusServiceUnavailable, wire.CodeUnavailable, "waiting for a new instance"},
		{fmt.Errorf("look up svc: %w", context.DeadlineExceeded), http.StatusServiceUnavailable, wire.CodeTimeout, "no instance of svc in time"},
		{fmt.Errorf("%w: no registry-service answered", router.ErrRegistry), http.StatusServiceUnavailable, wire.CodeUnavailable, "no registry-service answered"},
		{fmt.Errorf("%w: look up svc: %w", router.ErrRegistry, context.DeadlineExceeded), http.StatusServiceUnavailable, wire.CodeUnavailable, "look up svc"},
		{fmt.Errorf("look up svc: %w", router.ErrClosed), http.StatusServiceUnavailable, wire.CodeUnavailable, "shutting down"},
		{errors.New("something else"), http.StatusBadGateway, wire.CodeUnavailable, "something else"},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			tg := newGateway(t, gateway.Config{}, nil, nil)
			tg.picker.err = tc.err
			w := tg.get("/svc/x")
			if e := decodeError(t, w); w.Code != tc.status || e.Code != tc.code || !strings.Contains(e.Message, tc.message) {
				t.Fatalf("got %d %+v, want %d %s %q", w.Code, e, tc.status, tc.code, tc.message)
			}
			if sent := tg.fwd.forwarded(); len(sent) != 0 {
				t.Fatalf("forwarded %q", sent)
			}
			service := "svc"
			if errors.Is(tc.err, router.ErrUnknownService) {
				service = "unknown" // request paths do not name metrics
			}
			labels := map[string]string{"service": service, "code": fmt.Sprint(tc.status)}
			if n := tg.counter(t, "physarum_proxy_requests_total", labels); n != 1 {
				t.Fatalf("requests_total%v = %v, want 1", labels, n)
			}
		})
	}
}

func TestAPathNamingNoServiceIs404(t *testing.T) {
	tg := newGateway(t, gateway.Config{}, []string{"a"}, map[string]func(http.ResponseWriter) error{"a": answers})
	w := tg.get("/")
	if e := decodeError(t, w); w.Code != http.StatusNotFound || e.Code != wire.CodeNotFound {
		t.Fatalf("got %d %+v, want 404 not_found", w.Code, e)
	}
	if tg.picker.picks != 0 {
		t.Fatalf("the router was asked %d times", tg.picker.picks)
	}
}
