package forward

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestReverseProxyOverRoundTripper serves a request end to end through an
// httputil.ReverseProxy whose Transport is the RoundTripper, the peer put
// in the outgoing request's context.
func TestReverseProxyOverRoundTripper(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	id := p.server.ID()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: "svc"})
			pr.SetXForwarded()
			pr.Out = pr.Out.WithContext(WithPeer(pr.Out.Context(), id))
		},
		Transport: p.tr.RoundTripper(),
	}
	front := httptest.NewServer(rp)
	t.Cleanup(front.Close)

	resp, err := p.http.Post(front.URL+"/a/b?x=1", "text/plain", strings.NewReader("through the reverse proxy"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("status %d, headers %v; want the service's 201", resp.StatusCode, resp.Header)
	}
	s := decodeSeen(t, resp)
	if s.Method != http.MethodPost || s.Path != "/a/b" || s.Query != "x=1" || s.Body != "through the reverse proxy" {
		t.Errorf("upstream saw %s %s?%s %q", s.Method, s.Path, s.Query, s.Body)
	}
	if s.Host != "svc" || s.Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("upstream saw Host %q, X-Forwarded-For %q; want svc and 127.0.0.1", s.Host, s.Header.Get("X-Forwarded-For"))
	}
}

// closeRecorder is a request body that records being closed.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestRoundTripperWithoutPeer(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	client := &http.Client{Transport: p.tr.RoundTripper()}
	for _, u := range []string{"http://svc/x", "libp2p://not-a-peer-id/x", "libp2p:///x"} {
		t.Run(u, func(t *testing.T) {
			body := &closeRecorder{Reader: strings.NewReader("body")}
			req, err := http.NewRequest(http.MethodPost, u, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err == nil {
				_ = resp.Body.Close()
				t.Fatalf("status %d, want an error", resp.StatusCode)
			}
			if !errors.Is(err, ErrNoPeer) {
				t.Errorf("got %v, want ErrNoPeer", err)
			}
			if !body.closed {
				t.Error("the request body was not closed")
			}
		})
	}
}

// TestRoundTripperWithPeer sends a request with an ordinary URL to the
// peer of its context, and checks that the request is left as it was.
func TestRoundTripperWithPeer(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	rt := p.tr.RoundTripper()
	req, _ := http.NewRequestWithContext(WithPeer(t.Context(), p.server.ID()), http.MethodGet, "http://svc/x?y=1", nil)
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	before := req.Clone(t.Context())
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	s := decodeSeen(t, resp)
	if s.Path != "/x" || s.Query != "y=1" || s.Host != "svc" || s.Header.Get("X-Hop") != "" {
		t.Errorf("upstream saw %s?%s, Host %q, X-Hop %q", s.Path, s.Query, s.Host, s.Header.Get("X-Hop"))
	}
	if req.URL.String() != before.URL.String() || req.Host != before.Host || len(req.Header) != len(before.Header) ||
		req.Header.Get("X-Hop") != "1" || req.Header.Get("Connection") != "X-Hop" {
		t.Errorf("the request changed: %v %v, was %v %v", req.URL, req.Header, before.URL, before.Header)
	}
	if got, ok := PeerFrom(req.Context()); !ok || got != p.server.ID() {
		t.Errorf("PeerFrom: %s %v", got, ok)
	}
	if _, ok := PeerFrom(t.Context()); ok {
		t.Error("PeerFrom found a peer in a context without one")
	}
	// http.Client.CloseIdleConnections reaches the Transport.
	(&http.Client{Transport: rt}).CloseIdleConnections()
}

// TestRoundTripperContextCancel cancels a request's context while the
// service holds its answer: the round trip ends with the context's error,
// and the service's request is cancelled too.
func TestRoundTripperContextCancel(t *testing.T) {
	started := make(chan struct{}, 1)
	gone := make(chan struct{})
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
		close(gone)
	}), pairConfig{})
	client := &http.Client{Transport: p.tr.RoundTripper()}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.entries()[1].url("/hold"), nil)
	done := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the round trip did not end when its context was cancelled")
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the service's request was not cancelled")
	}
}
