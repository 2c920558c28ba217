package forward

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
)

// openStreams counts the streams a Server has open, idle ones included.
func (s *Server) openStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// idleStreams counts the streams a Transport keeps.
func (t *Transport) idleStreams() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.idle {
		n += len(l)
	}
	return n
}

func TestStreamsAreReused(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	for i := range 20 {
		var body io.Reader
		method := http.MethodGet
		if i%2 == 1 {
			method, body = http.MethodPost, strings.NewReader(strings.Repeat("b", i*1000))
		}
		req, _ := http.NewRequest(method, "http://svc/n", body)
		resp, err := p.tr.RoundTrip(t.Context(), p.server.ID(), req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		s := decodeSeen(t, resp)
		if s.Method != method {
			t.Fatalf("request %d: upstream saw %s", i, s.Method)
		}
	}
	// A stream goes back to the pool just after its response body ends,
	// so on a busy machine the next request may now and then open a second
	// one: more than two means no reuse.
	if n := p.srv.openStreams(); n < 1 || n > 2 {
		t.Errorf("20 requests one after another used %d streams, want 1 (2 on a busy machine)", n)
	}
	// The last stream goes back to the pool just after its body is read.
	eventually.True(t, 5*time.Second, "the last stream back in the pool", func() bool { return p.tr.idleStreams() >= 1 })
	if n := p.tr.idleStreams(); n > 2 {
		t.Errorf("the Transport keeps %d streams, want 1 (2 on a busy machine)", n)
	}
	p.tr.CloseIdle()
	eventually.True(t, 5*time.Second, "the Server to let the stream go", func() bool { return p.srv.openStreams() == 0 })
}

func TestStreamNotKeptAfterUnreadBody(t *testing.T) {
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge) // answers without reading the body
	}), pairConfig{})
	req, _ := http.NewRequest(http.MethodPost, "http://svc/big", io.LimitReader(&pattern{}, 10<<20))
	resp, err := p.tr.RoundTrip(t.Context(), p.server.ID(), req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("got %d (close %v), want 413 with the stream closed", resp.StatusCode, resp.Close)
	}
	eventually.True(t, 5*time.Second, "the stream to be closed", func() bool { return p.srv.openStreams() == 0 })
	if n := p.tr.idleStreams(); n != 0 {
		t.Errorf("the Transport kept %d streams the Server closed", n)
	}
}

// TestStaleStreamRetried lets the Server close a kept stream, then sends
// on it: a request that can be sent again is, one that cannot is reported
// as not sent.
func TestStaleStreamRetried(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{
		server:    ServerOptions{KeepAliveTimeout: 100 * time.Millisecond},
		transport: TransportOptions{IdleStreamTimeout: time.Minute},
	})
	warm := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://svc/warm", nil)
		resp, err := p.tr.RoundTrip(t.Context(), p.server.ID(), req)
		if err != nil {
			t.Fatal(err)
		}
		decodeSeen(t, resp)
		eventually.True(t, 5*time.Second, "the Server to close the kept stream", func() bool { return p.srv.openStreams() == 0 })
		if p.tr.idleStreams() != 1 {
			t.Fatal("no stream kept")
		}
	}
	for _, tc := range []struct {
		name    string
		req     func() *http.Request
		wantErr bool
	}{
		{"no body", func() *http.Request { r, _ := http.NewRequest(http.MethodGet, "http://svc/x", nil); return r }, false},
		{"body with GetBody", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://svc/x", bytes.NewReader([]byte("again")))
			return r
		}, false},
		{"body without GetBody", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://svc/x", io.MultiReader(strings.NewReader("once")))
			return r
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warm()
			resp, err := p.tr.RoundTrip(t.Context(), p.server.ID(), tc.req())
			if tc.wantErr {
				if !IsNotSent(err) {
					t.Errorf("got %v, want a not-sent error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := decodeSeen(t, resp); s.Path != "/x" {
				t.Errorf("upstream saw %q", s.Path)
			}
		})
	}
}

func TestCloseClosesIdleStreamsAtOnce(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{server: ServerOptions{ShutdownTimeout: time.Minute}})
	resp, err := p.http.Get(p.url("/svc/x"))
	if err != nil {
		t.Fatal(err)
	}
	decodeSeen(t, resp)
	if p.srv.openStreams() != 1 {
		t.Fatal("no stream kept")
	}
	start := time.Now()
	_ = p.srv.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %s with only an idle stream", took)
	}
}

// TestConcurrentRequests sends many different requests at once through the
// client proxy: each must get its own answer, whichever stream carries it.
func TestConcurrentRequests(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	const clients, each = 8, 25
	errs := make(chan error, clients*each)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				path := fmt.Sprintf("/c%d/r%d", c, i)
				var body io.Reader
				method := http.MethodGet
				if i%3 == 0 {
					method, body = http.MethodPost, strings.NewReader(strings.Repeat(path, i*100))
				}
				req, _ := http.NewRequest(method, p.url("/svc"+path+"?i="+strconv.Itoa(i)), body)
				resp, err := p.http.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				var s seen
				err = json.NewDecoder(resp.Body).Decode(&s)
				_ = resp.Body.Close()
				switch {
				case err != nil:
					errs <- fmt.Errorf("%s: %w", path, err)
				case s.Path != path || s.Query != "i="+strconv.Itoa(i) || s.Method != method:
					errs <- fmt.Errorf("%s %s?i=%d answered for %s %s?%s", method, path, i, s.Method, s.Path, s.Query)
				case method == http.MethodPost && s.Body != strings.Repeat(path, i*100):
					errs <- fmt.Errorf("%s: body of %d bytes came back as %d", path, i*100*len(path), len(s.Body))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.tr.idleStreams(); n == 0 || n > 16 {
		t.Errorf("the Transport keeps %d streams after 8 concurrent clients", n)
	}
}

// TestClientGoneCancelsService: a client that leaves in the middle of a
// streamed response makes the service's request end too, through Forward,
// the stream reset and the Server's watch on it.
func TestClientGoneCancelsService(t *testing.T) {
	gone := make(chan struct{})
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		close(gone)
	}), pairConfig{})
	resp, err := p.http.Get(p.url("/svc/poll"))
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close() // mid-body: net/http drops the connection
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the service kept serving a client that left")
	}
	eventually.True(t, 5*time.Second, "the request to end", func() bool { return p.srv.InFlight() == 0 })
}

// TestForwardRetryKeepsBody: after a not-sent failure, Forward can be
// called again with the same request, body included, as the proxy daemon
// does when it tries another instance.
func TestForwardRetryKeepsBody(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	other := p2ptest.Start(t, p2ptest.Spec{Bootstraps: []peer.AddrInfo{p.server.AddrInfo()}})
	p.client.Host().Peerstore().AddAddrs(other.ID(), other.Host().Addrs(), time.Minute)
	firstErr := make(chan error, 4)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, uri, _ := SplitPath(r.URL)
		err := p.tr.Forward(w, r, other.ID(), uri) // does not serve Protocol
		firstErr <- err
		if IsNotSent(err) {
			_ = p.tr.Forward(w, r, p.server.ID(), uri)
		}
	}))
	t.Cleanup(proxy.Close)
	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		{"length", func() io.Reader { return strings.NewReader(strings.Repeat("L", 100<<10)) }},
		{"chunked", func() io.Reader {
			return io.MultiReader(strings.NewReader("chunk1,"), strings.NewReader(strings.Repeat("C", 50<<10)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := io.ReadAll(tc.body())
			resp, err := p.http.Post(proxy.URL+"/svc/retry", "text/plain", tc.body())
			if err != nil {
				t.Fatal(err)
			}
			if err := <-firstErr; !IsNotSent(err) {
				t.Fatalf("first attempt: %v, want not sent", err)
			}
			if s := decodeSeen(t, resp); s.Body != string(want) {
				t.Errorf("the second attempt delivered %d bytes, want %d", len(s.Body), len(want))
			}
		})
	}
}

// TestForwardNotSentMeansBodyUnread: when the instance's service is down,
// the Server answers that it did not forward the request. Forward reports
// that as not sent only if it read none of the body (so that the caller
// can send it elsewhere); otherwise it answers 502 itself. Which happens
// depends on timing; either way the promise must hold.
func TestForwardNotSentMeansBodyUnread(t *testing.T) {
	p := startPair(t, http.NotFoundHandler(), pairConfig{target: freeAddr(t)})
	type outcome struct {
		err  error
		read int64
	}
	got := make(chan outcome, 1)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orig := r.Body
		body := &countingReader{r: orig}
		r.Body = io.NopCloser(body)
		err := p.tr.Forward(w, r, p.server.ID(), "/x")
		if IsNotSent(err) {
			WriteError(w, http.StatusBadGateway, wire.CodeUnavailable, "not sent")
		}
		o := outcome{err, body.n.Load()}
		// Read the rest, so that net/http does not drop the connection
		// under a client still sending.
		_, _ = io.Copy(io.Discard, orig)
		got <- o
	}))
	t.Cleanup(proxy.Close)
	for i := range 10 {
		resp, err := p.http.Post(proxy.URL, "text/plain", io.LimitReader(&pattern{}, int64(i)*100<<10+1))
		if err != nil {
			t.Fatal(err)
		}
		wantJSONError(t, resp, http.StatusBadGateway, wire.CodeUnavailable)
		o := <-got
		if o.err == nil {
			t.Fatal("Forward to a dead service succeeded")
		}
		if IsNotSent(o.err) && o.read > 0 {
			t.Errorf("not sent, yet %d bytes of the body were read: %v", o.read, o.err)
		}
	}
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestRoundTripRefusesWhatBreaksTheMessage(t *testing.T) {
	tr := NewTransport(nil, TransportOptions{}) // refused before any stream opens
	for _, tc := range []struct {
		name string
		req  func() *http.Request
	}{
		{"method", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://svc/", nil)
			r.Method = "GET /x"
			return r
		}},
		{"host", func() *http.Request { r, _ := http.NewRequest("GET", "http://svc/", nil); r.Host = "a\r\nb"; return r }},
		{"uri", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://svc/", nil)
			r.URL.RawQuery = "a b"
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tr.RoundTrip(t.Context(), "", tc.req()); err == nil || IsNotSent(err) {
				t.Errorf("got %v, want a plain error", err)
			}
		})
	}
}

func TestHeaderInjectionIsDefused(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	req, _ := http.NewRequest(http.MethodGet, "http://svc/x", nil)
	req.Header["X-Evil"] = []string{"a\r\nX-Injected: 1"}
	req.Header["Bad Name"] = []string{"x"}
	resp, err := p.tr.RoundTrip(t.Context(), p.server.ID(), req)
	if err != nil {
		t.Fatal(err)
	}
	s := decodeSeen(t, resp)
	if s.Header.Get("X-Injected") != "" || s.Header.Get("Bad Name") != "" {
		t.Errorf("a header smuggled through: %v", s.Header)
	}
	if got := s.Header.Get("X-Evil"); !strings.HasPrefix(got, "a") || strings.ContainsAny(got, "\r\n") {
		t.Errorf("X-Evil arrived as %q", got)
	}
}
