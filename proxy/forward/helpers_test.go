package forward

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, p2ptest.IgnoreLeaks()...)
}

// pair is a client proxy and a service proxy on two real libp2p nodes,
// with a real upstream service behind the service proxy.
type pair struct {
	server, client *p2ptest.Node
	srv            *Server
	tr             *Transport
	upstream       *httptest.Server
	// proxy is the client proxy: /svc/<rest> goes to the instance.
	proxy *httptest.Server
	// http talks to proxy.
	http *http.Client
	// forwardErr receives Forward's errors (buffered; dropped when full).
	forwardErr chan error
}

type pairConfig struct {
	server    ServerOptions
	transport TransportOptions
	// target overrides the upstream's address (for an unreachable service).
	target string
}

// startPair starts the nodes, the upstream service, the Server and the
// client proxy, and stops them all when the test ends.
func startPair(t testing.TB, upstream http.Handler, cfg pairConfig) *pair {
	t.Helper()
	nodes := p2ptest.Network(t, 2, nil)
	p := &pair{server: nodes[0], client: nodes[1], forwardErr: make(chan error, 16)}

	p.upstream = httptest.NewServer(upstream)
	t.Cleanup(p.upstream.Close)
	target := cfg.target
	if target == "" {
		target = p.upstream.Listener.Addr().String()
	}
	if cfg.server.Logger == nil {
		cfg.server.Logger = p2ptest.Logger(t)
	}
	srv, err := Serve(p.server.Host(), target, cfg.server)
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	p.srv = srv
	t.Cleanup(func() { _ = srv.Close() })

	p.tr = NewTransport(p.client.Host(), cfg.transport)
	p.proxy = httptest.NewServer(http.HandlerFunc(p.serveClient))
	t.Cleanup(p.proxy.Close)
	tr := &http.Transport{Proxy: nil, DisableCompression: true}
	p.http = &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	return p
}

// serveClient is what the proxy daemon does with a client's request, less
// choosing the instance.
func (p *pair) serveClient(w http.ResponseWriter, r *http.Request) {
	service, uri, err := SplitPath(r.URL)
	if err != nil || service != "svc" {
		WriteError(w, http.StatusNotFound, wire.CodeNotFound, "unknown service")
		return
	}
	err = p.tr.Forward(w, r, p.server.ID(), uri)
	if Retryable(err) { // one instance only: nowhere to retry
		WriteError(w, http.StatusBadGateway, wire.CodeUnavailable, "no reachable instance")
	}
	if err != nil {
		select {
		case p.forwardErr <- err:
		default:
		}
	}
}

// url is the client proxy's URL for path (which starts with /svc).
func (p *pair) url(path string) string { return p.proxy.URL + path }

// rawStream opens a stream to the Server from the client node, for tests
// that speak the protocol by hand.
func (p *pair) rawStream(t testing.TB) network.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := p.client.Host().NewStream(ctx, p.server.ID(), Protocol)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	t.Cleanup(func() { _ = st.Reset() })
	return st
}

// readResponse reads one response from r within 10s.
func readResponse(t testing.TB, st network.Stream) *http.Response {
	t.Helper()
	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(st), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp
}

// wantJSONError checks that resp is a proxy's JSON error with status and
// code, and closes its body.
func wantJSONError(t testing.TB, resp *http.Response, status int, code string) wire.Error {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read error body: %v", err)
	}
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if got := resp.Header.Get(ErrorHeader); got != code {
		t.Errorf("%s %q, want %q", ErrorHeader, got, code)
	}
	var e wire.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.Code != code || e.Message == "" {
		t.Errorf("error body %+v, want code %q and a message", e, code)
	}
	return e
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(freeport.T(t))
}

// pattern is an endless deterministic byte stream, so that large bodies
// are generated and checked without holding them in memory.
type pattern struct{ off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte((p.off + int64(i)) * 7 % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}

// entry is a way into the pair for an http.Client: through the client
// proxy, whose handler runs Forward, or straight through the Transport's
// RoundTripper. The tests of what crosses the pair run over both.
type entry struct {
	name   string
	client *http.Client
	// url returns the URL for uri, the path and query the service sees.
	url func(uri string) string
	// host is the Host header the service sees for url's requests.
	host string
	// via is what X-Forwarded-For gains on the way when it had a value.
	via string
}

func (p *pair) entries() []entry {
	id := p.server.ID().String()
	rt := &http.Client{Transport: p.tr.RoundTripper()}
	return []entry{
		{
			name: "proxy", client: p.http,
			url:  func(uri string) string { return p.url("/svc" + uri) },
			host: p.proxy.Listener.Addr().String(), via: ", 127.0.0.1",
		},
		{
			name: "roundtripper", client: rt,
			url:  func(uri string) string { return Scheme + "://" + id + uri },
			host: id,
		},
	}
}
