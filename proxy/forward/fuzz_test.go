package forward

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
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
