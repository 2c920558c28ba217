package forward

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// FuzzServeStream feeds arbitrary bytes to a Server as if a peer had sent
// them on a stream, through the same code as the stream handler, with a
// real service behind it. Whatever comes in, the Server must not panic or
// hang, must end the stream, and anything it writes must begin with a
// well-formed HTTP/1.1 response.
func FuzzServeStream(f *testing.F) {
	upstream := httptest.NewServer(http.HandlerFunc(fuzzService))
	f.Cleanup(upstream.Close)
	srv, err := newServer(upstream.Listener.Addr().String(), ServerOptions{
		HeaderTimeout:         time.Second,
		IdleTimeout:           time.Second,
		ResponseHeaderTimeout: 2 * time.Second,
		MaxHeaderBytes:        8 << 10,
		ShutdownTimeout:       time.Second,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })

	f.Add([]byte("GET / HTTP/1.1\r\nHost: svc\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &fakeStream{in: bytes.NewReader(in)}
		srv.newStream(c, "12D3KooWFuzzPeer").serve()
		out, ended := c.result()
		if !ended {
			t.Fatal("the stream was neither closed nor reset")
		}
		if len(out) == 0 {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("the Server wrote a malformed response: %v\n%q", err, out)
		}
		_ = resp.Body.Close()
	})
}

// FuzzReadResponse feeds arbitrary bytes to a Transport as the answer of a
// Server on a stream, through the same code as RoundTrip after the stream
// is open: the response head is parsed (http.ReadResponse and what the
// Transport does with it: errors of the Server, upgrades, framing) and the
// body read to its end and closed. kind picks the request: 0 GET, 1 HEAD,
// 2 an upgrade to websocket, 3 a POST with a body. Whatever comes in, the
// Transport must not panic or hang; the stream must end up either closed
// or reset, or kept for another request when the response was read whole;
// and a body of declared length must read as exactly that length or fail.
func FuzzReadResponse(f *testing.F) {
	f.Add(uint8(0), []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
	f.Fuzz(func(t *testing.T, kind uint8, in []byte) {
		tr := NewTransport(nil, TransportOptions{MaxHeaderBytes: 8 << 10})
		c := &fakeStream{in: bytes.NewReader(in)}
		ps := tr.newPooledStream(c)
		const p = peer.ID("fuzz-peer")

		req, _ := http.NewRequest(http.MethodGet, "http://svc/x", nil)
		switch kind % 4 {
		case 1:
			req.Method = http.MethodHead
		case 2:
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
		case 3:
			req.Method = http.MethodPost
			req.Body = io.NopCloser(strings.NewReader("request body"))
			req.ContentLength = int64(len("request body"))
		}
		body, cl := outgoingBody(req)
		method, uri, hostname, err := requestLine(req)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.exchange(t.Context(), p, ps, false, req, body, cl, method+" "+uri+" HTTP/1.1\r\n", hostname)
		if err != nil {
			if _, ended := c.result(); !ended {
				t.Fatalf("failed with %v, but the stream was not closed", err)
			}
			return
		}
		n, rerr := io.Copy(io.Discard, resp.Body)
		if rerr == nil && resp.ContentLength >= 0 && resp.StatusCode != http.StatusSwitchingProtocols &&
			req.Method != http.MethodHead && n != resp.ContentLength {
			t.Fatalf("read a body of %d bytes whole, declared %d", n, resp.ContentLength)
		}
		if err := resp.Body.Close(); err != nil {
			t.Fatalf("close body: %v", err)
		}
		_, ended := c.result()
		tr.mu.Lock()
		kept := len(tr.idle[p]) == 1 && tr.idle[p][0] == ps
		tr.mu.Unlock()
		if ended == kept {
			t.Fatalf("after the response: stream ended %v, kept %v; want exactly one", ended, kept)
		}
		if kept && rerr != nil {
			t.Fatalf("the stream is kept after a body that failed: %v", rerr)
		}
		tr.CloseIdle()
	})
}

// fuzzService answers in the ways the fuzzer can ask for by path.
func fuzzService(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ws":
		upgradeEcho(w, r)
	case "/status":
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		if code < 200 || code > 599 {
			code = http.StatusTeapot
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "status body")
	case "/chunked":
		_, _ = io.WriteString(w, "a")
		http.NewResponseController(w).Flush()
		_, _ = io.Copy(w, r.Body)
	default:
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("X-Seen-Method", r.Method)
		_, _ = w.Write(b)
	}
}

// fakeStream is a stream whose peer sent in and then half-closed, and
// which records what the Server writes.
type fakeStream struct {
	mu     sync.Mutex
	in     *bytes.Reader
	out    bytes.Buffer
	ended  bool
	closed bool
}

func (s *fakeStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return 0, io.ErrClosedPipe
	}
	return s.in.Read(p)
}

func (s *fakeStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.closed {
		return 0, io.ErrClosedPipe
	}
	return s.out.Write(p)
}

func (s *fakeStream) SetReadDeadline(time.Time) error  { return nil }
func (s *fakeStream) SetWriteDeadline(time.Time) error { return nil }

func (s *fakeStream) CloseWrite() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *fakeStream) Close() error { return s.Reset() }

func (s *fakeStream) Reset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	return nil
}

func (s *fakeStream) result() ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.out.Bytes()), s.ended
}
