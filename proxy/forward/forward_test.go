package forward

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
)

// seen is what the upstream service saw of a request.
type seen struct {
	Method   string
	Path     string
	RawPath  string
	Query    string
	Host     string
	Header   http.Header
	Body     string
	Length   int64
	Encoding []string
}

// echo answers with what it saw, as JSON, and sets a few response
// headers for the tests to find.
func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s := seen{
		Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery,
		Host: r.Host, Header: r.Header, Body: string(body),
		Length: r.ContentLength, Encoding: r.TransferEncoding,
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Upstream", "yes")
	h.Add("Set-Cookie", "a=1")
	h.Add("Set-Cookie", "b=2")
	// A hop-by-hop header of the service's connection must not reach the client.
	h.Set("Connection", "X-Service-Hop")
	h.Set("X-Service-Hop", "secret")
	h.Set(ErrorHeader, "forged")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(s)
}

func decodeSeen(t *testing.T, resp *http.Response) seen {
	t.Helper()
	defer resp.Body.Close()
	var s seen
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("decode upstream echo: %v", err)
	}
	// Read to the end, as a client that wants its stream kept does: the
	// decoder stops after the object, and Close does not wait for the
	// chunked body's last bytes if they have not arrived yet.
	_, _ = io.Copy(io.Discard, resp.Body)
	return s
}

func TestGetPathAndQuery(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	for _, e := range p.entries() {
		t.Run(e.name, func(t *testing.T) {
			for _, tc := range []struct {
				uri                 string // after /svc for the proxy
				wantPath, wantQuery string
			}{
				{"/a/b?x=1&y=%20z", "/a/b", "x=1&y=%20z"},
				{"?x=1&y=2", "/", "x=1&y=2"},
				{"/?q=%2F", "/", "q=%2F"},
				{"", "/", ""},
				{"/a%2Fb/c%20d", "/a/b/c d", ""},
			} {
				t.Run("uri="+tc.uri, func(t *testing.T) {
					resp, err := e.client.Get(e.url(tc.uri))
					if err != nil {
						t.Fatal(err)
					}
					if resp.StatusCode != http.StatusCreated {
						t.Fatalf("status %d, want 201", resp.StatusCode)
					}
					s := decodeSeen(t, resp)
					if s.Method != http.MethodGet || s.Path != tc.wantPath || s.Query != tc.wantQuery {
						t.Errorf("upstream saw %s %q ?%q, want GET %q ?%q", s.Method, s.Path, s.Query, tc.wantPath, tc.wantQuery)
					}
				})
			}
			// Escaping in the rest of the path survives: a%2Fb is not a/b.
			resp, err := e.client.Get(e.url("/a%2Fb"))
			if err != nil {
				t.Fatal(err)
			}
			if s := decodeSeen(t, resp); s.RawPath != "/a%2Fb" {
				t.Errorf("upstream raw path %q, want /a%%2Fb", s.RawPath)
			}
		})
	}
}

func TestPostBody(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	small := "hello, instance"
	big := strings.Repeat("0123456789abcdef", 10000) // above inlineBody
	for _, e := range p.entries() {
		for _, tc := range []struct {
			name    string
			body    io.Reader
			want    string
			wantLen int64
		}{
			{"small", strings.NewReader(small), small, int64(len(small))},
			{"large", strings.NewReader(big), big, int64(len(big))},
			{"chunked", io.MultiReader(strings.NewReader("part1,"), strings.NewReader("part2")), "part1,part2", -1},
			{"empty", http.NoBody, "", 0},
		} {
			t.Run(e.name+"/"+tc.name, func(t *testing.T) {
				req, err := http.NewRequest(http.MethodPost, e.url("/upload?k=v"), tc.body)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := e.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				s := decodeSeen(t, resp)
				if s.Method != http.MethodPost || s.Path != "/upload" || s.Query != "k=v" {
					t.Errorf("upstream saw %s %s?%s", s.Method, s.Path, s.Query)
				}
				if s.Body != tc.want {
					t.Errorf("upstream got a body of %d bytes, want %d", len(s.Body), len(tc.want))
				}
				if s.Length != tc.wantLen {
					t.Errorf("upstream ContentLength %d, want %d", s.Length, tc.wantLen)
				}
			})
		}
	}
}

func TestHeadersBothWays(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	for _, e := range p.entries() {
		t.Run(e.name, func(t *testing.T) { testHeadersBothWays(t, e) })
	}
}

func testHeadersBothWays(t *testing.T, e entry) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, e.url("/h"), strings.NewReader("x"))
	req.Header.Set("User-Agent", "physarum-test")
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	// Hop-by-hop: none of these may reach the service.
	req.Header.Set("Connection", "X-Client-Hop")
	req.Header.Set("X-Client-Hop", "1")
	req.Header.Set("Proxy-Authorization", "Basic x")
	req.Header.Set("Te", "gzip")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("X-Upstream"); got != "yes" {
		t.Errorf("response header X-Upstream %q, want yes", got)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 {
		t.Errorf("Set-Cookie %q, want both cookies", got)
	}
	if resp.Header.Get("X-Service-Hop") != "" {
		t.Error("a header the service's Connection named reached the client")
	}
	if got := resp.Header.Get(ErrorHeader); got != "" {
		t.Errorf("the service forged %s: %q reached the client", ErrorHeader, got)
	}
	s := decodeSeen(t, resp)
	h := s.Header
	if h.Get("User-Agent") != "physarum-test" || h.Get("Authorization") != "Bearer t" {
		t.Errorf("end-to-end headers lost: %v", h)
	}
	if got := h.Values("X-Multi"); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Errorf("X-Multi %q, want [one two]", got)
	}
	for _, k := range []string{"X-Client-Hop", "Proxy-Authorization", "Te", "Keep-Alive"} {
		if v := h.Get(k); v != "" {
			t.Errorf("hop-by-hop %s: %q reached the service", k, v)
		}
	}
	if got, want := h.Get("X-Forwarded-For"), "10.0.0.1"+e.via; got != want {
		t.Errorf("X-Forwarded-For %q, want %q", got, want)
	}
	if s.Host != e.host {
		t.Errorf("Host %q, want the client's %q", s.Host, e.host)
	}
}

func TestForwardedForPeerWithoutClientAddress(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	req, _ := http.NewRequest(http.MethodGet, "http://svc/x", nil)
	resp, err := p.tr.RoundTrip(t.Context(), p.server.ID(), req)
	if err != nil {
		t.Fatal(err)
	}
	s := decodeSeen(t, resp)
	if got := s.Header.Get("X-Forwarded-For"); got != p.client.ID().String() {
		t.Errorf("X-Forwarded-For %q, want the calling peer %s", got, p.client.ID())
	}
	if got := s.Header.Get("User-Agent"); got != "" {
		t.Errorf("User-Agent %q appeared on the way", got)
	}
}

func TestHeadAndNoContent(t *testing.T) {
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/none" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Length", "42")
		w.WriteHeader(http.StatusOK)
	}), pairConfig{})
	for _, e := range p.entries() {
		t.Run(e.name, func(t *testing.T) {
			resp, err := e.client.Head(e.url("/h"))
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ContentLength != 42 {
				t.Errorf("HEAD: status %d length %d, want 200 and 42", resp.StatusCode, resp.ContentLength)
			}
			resp, err = e.client.Get(e.url("/none"))
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("status %d, want 204", resp.StatusCode)
			}
		})
	}
}

// TestChunkedResponseStreams shows that the first chunk reaches the client
// while the service is still writing: the service finishes only after the
// client has read it.
func TestChunkedResponseStreams(t *testing.T) {
	release := make(chan struct{}, 1)
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Total")
		_, _ = io.WriteString(w, "first chunk;")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second chunk")
		w.Header().Set("X-Total", "2")
	}), pairConfig{})
	for _, e := range p.entries() {
		t.Run(e.name, func(t *testing.T) { testChunkedResponseStreams(t, e, release) })
	}
}

func testChunkedResponseStreams(t *testing.T, e entry, release chan<- struct{}) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/stream"), nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 {
		t.Fatalf("response not chunked: length %d, encoding %v", resp.ContentLength, resp.TransferEncoding)
	}
	first := make([]byte, len("first chunk;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("first chunk did not arrive while the service was writing: %v", err)
	}
	if string(first) != "first chunk;" {
		t.Fatalf("first chunk %q", first)
	}
	release <- struct{}{}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "second chunk" {
		t.Errorf("rest %q, want %q", rest, "second chunk")
	}
	if got := resp.Trailer.Get("X-Total"); got != "2" {
		t.Errorf("trailer X-Total %q, want 2", got)
	}
}

// TestRequestBodyStreams shows a request body reaching the service while
// the client is still sending it, and the response streaming back at the
// same time (full duplex).
func TestRequestBodyStreams(t *testing.T) {
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				_, _ = io.WriteString(w, "echo:"+line)
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}), pairConfig{})
	for _, e := range p.entries() {
		t.Run(e.name, func(t *testing.T) { testRequestBodyStreams(t, e) })
	}
}

func testRequestBodyStreams(t *testing.T, e entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url("/duplex"), pr)
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := e.client.Do(req)
		got <- result{resp, err}
	}()
	if _, err := io.WriteString(pw, "one\n"); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.resp.Body.Close()
	br := bufio.NewReader(r.resp.Body)
	for _, line := range []string{"one", "two", "three"} {
		if line != "one" {
			if _, err := io.WriteString(pw, line+"\n"); err != nil {
				t.Fatal(err)
			}
		}
		echoed, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("echo of %q: %v", line, err)
		}
		if echoed != "echo:"+line+"\n" {
			t.Fatalf("got %q for %q", echoed, line)
		}
	}
	_ = pw.Close()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the body ended: %q, %v", rest, err)
	}
}

func TestLargeBodiesStayOutOfMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB")
	}
	const size = 100 << 20
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/download":
			n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
			if r.URL.Query().Get("len") == "1" {
				w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			}
			_, _ = io.Copy(w, io.LimitReader(&pattern{}, n))
		}
	}), pairConfig{})

	sum := sha256.New()
	if _, err := io.Copy(sum, io.LimitReader(&pattern{}, size)); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(sum.Sum(nil))

	peak := watchHeap(t)
	t.Run("upload", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, p.url("/svc/upload"), io.LimitReader(&pattern{}, size))
		req.ContentLength = size
		resp, err := p.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if got := string(body); got != fmt.Sprintf("%d %s", size, want) {
			t.Errorf("service got %q, want %d bytes hashing to %s", got, size, want)
		}
	})
	for _, withLen := range []string{"0", "1"} {
		t.Run("download/content-length="+withLen, func(t *testing.T) {
			resp, err := p.http.Get(p.url(fmt.Sprintf("/svc/download?n=%d&len=%s", size, withLen)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if n != size || hex.EncodeToString(h.Sum(nil)) != want {
				t.Errorf("got %d bytes hashing to %x, want %d hashing to %s", n, h.Sum(nil), size, want)
			}
		})
	}
	growth, sys := peak()
	t.Logf("while moving 3 x 100 MiB, heap in use grew by at most %.1f MiB, memory from the system by %.1f MiB",
		float64(growth)/(1<<20), float64(sys)/(1<<20))
	if growth > 64<<20 || sys > 64<<20 {
		t.Errorf("heap in use grew by %d MiB, memory from the system by %d MiB: bodies are being buffered", growth>>20, sys>>20)
	}
}

// watchHeap samples the heap until the returned function is called, which
// returns the largest growth of HeapInuse over its level at the start, and
// how much memory the runtime got from the system (Sys) meanwhile.
func watchHeap(t *testing.T) func() (heap, sys uint64) {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, baseSys := ms.HeapInuse, ms.Sys
	var peak, peakSys atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			if ms.Sys > baseSys {
				peakSys.Store(ms.Sys - baseSys)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var once atomic.Bool
	finish := func() (uint64, uint64) {
		if once.CompareAndSwap(false, true) {
			close(stop)
			<-done
		}
		return peak.Load(), peakSys.Load()
	}
	t.Cleanup(func() { finish() })
	return finish
}

// upgradeEcho is a tiny protocol switch done by hand: after 101 it echoes
// every byte until the client half-closes, then closes.
func upgradeEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
		!strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
		http.Error(w, "upgrade required", http.StatusUpgradeRequired)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Echo: on\r\n\r\n")
	if brw.Flush() != nil {
		return
	}
	_, _ = io.Copy(conn, brw)
}

func TestUpgradePassThrough(t *testing.T) {
	p := startPair(t, http.HandlerFunc(upgradeEcho), pairConfig{})
	t.Run("proxy", func(t *testing.T) {
		conn, err := net.Dial("tcp", p.proxy.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		// The first bytes of the new protocol ride with the request head.
		_, err = io.WriteString(conn, "GET /svc/ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\nearly;")
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkUpgradeEcho(t, resp, br, conn, conn.(*net.TCPConn).CloseWrite, "early;")
	})
	t.Run("roundtripper", func(t *testing.T) {
		e := p.entries()[1]
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/ws"), nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		conn, ok := resp.Body.(interface {
			io.ReadWriteCloser
			CloseWrite() error
		})
		if !ok {
			t.Fatalf("101 Body is a %T, want an io.ReadWriteCloser with CloseWrite", resp.Body)
		}
		checkUpgradeEcho(t, resp, conn, conn, conn.CloseWrite, "")
	})
	eventually.True(t, 5*time.Second, "tunnels to end on the service proxy", func() bool { return p.srv.InFlight() == 0 })
}

// checkUpgradeEcho checks that resp switched to upgradeEcho's protocol,
// that what is written to w comes back on r (early: what the client sent
// with its request head), and that a half-close ends the connection
// cleanly.
func checkUpgradeEcho(t *testing.T, resp *http.Response, r io.Reader, w io.Writer, closeWrite func() error, early string) {
	t.Helper()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" || resp.Header.Get("X-Echo") != "on" {
		t.Fatalf("got %s %v, want 101 to websocket", resp.Status, resp.Header)
	}
	msgs := []string{"hello;", strings.Repeat("z", 100<<10)}
	if early != "" {
		msgs = append([]string{early}, msgs...)
	}
	for i, m := range msgs {
		if i > 0 || early == "" {
			if _, err := io.WriteString(w, m); err != nil {
				t.Fatal(err)
			}
		}
		got := make([]byte, len(m))
		if _, err := io.ReadFull(r, got); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if string(got) != m {
			t.Fatalf("echo %d: got %d bytes that differ", i, len(got))
		}
	}
	// Half-close: the service sees the end, and closes its side in turn.
	if err := closeWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Errorf("after half-close: %q, %v; want a clean end", rest, err)
	}
}

func TestUpgradeRefusedIsAPlainResponse(t *testing.T) {
	p := startPair(t, http.HandlerFunc(upgradeEcho), pairConfig{})
	req, _ := http.NewRequest(http.MethodGet, p.url("/svc/ws"), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "h2c")
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("status %d, want the service's 426", resp.StatusCode)
	}
}

func TestServiceDown(t *testing.T) {
	p := startPair(t, http.NotFoundHandler(), pairConfig{target: freeAddr(t)})
	resp, err := p.http.Get(p.url("/svc/x"))
	if err != nil {
		t.Fatal(err)
	}
	wantJSONError(t, resp, http.StatusBadGateway, wire.CodeUnavailable)

	// The Transport reports it as not sent, with the Server's reason.
	req, _ := http.NewRequest(http.MethodGet, "http://svc/x", nil)
	_, err = p.tr.RoundTrip(t.Context(), p.server.ID(), req)
	if !IsNotSent(err) || wire.CodeOf(err) != wire.CodeUnavailable {
		t.Errorf("RoundTrip: %v; want a not-sent error with code %q", err, wire.CodeUnavailable)
	}
}

func TestServiceTooSlow(t *testing.T) {
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; returns when the proxy gives up
	}), pairConfig{server: ServerOptions{ResponseHeaderTimeout: 200 * time.Millisecond}})
	start := time.Now()
	resp, err := p.http.Get(p.url("/svc/slow"))
	if err != nil {
		t.Fatal(err)
	}
	wantJSONError(t, resp, http.StatusGatewayTimeout, wire.CodeTimeout)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("504 took %s with a 200ms timeout", took)
	}
}

// TestServiceFailsMidBody cuts the service's connection in the middle of
// a response the client has started reading: the client must see an error,
// never a short body that looks whole.
func TestServiceFailsMidBody(t *testing.T) {
	cut := make(chan struct{})
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("len") == "1" {
			w.Header().Set("Content-Length", "1000")
		}
		_, _ = io.WriteString(w, "only part of it")
		http.NewResponseController(w).Flush()
		select {
		case <-cut:
		case <-r.Context().Done():
		}
		panic(http.ErrAbortHandler) // cut the connection
	}), pairConfig{})
	for _, e := range p.entries() {
		for _, withLen := range []string{"0", "1"} {
			t.Run(e.name+"/content-length="+withLen, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/cut?len="+withLen), nil)
				resp, err := e.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				part := make([]byte, len("only part of it"))
				if _, err := io.ReadFull(resp.Body, part); err != nil {
					t.Fatalf("first part: %v", err)
				}
				cut <- struct{}{}
				if rest, err := io.ReadAll(resp.Body); err == nil {
					t.Errorf("a cut body read as whole (%d more bytes)", len(rest))
				}
			})
		}
	}
}

func TestUnknownServicePath(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	resp, err := p.http.Get(p.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	wantJSONError(t, resp, http.StatusNotFound, wire.CodeNotFound)
}

func TestGarbageOnTheStream(t *testing.T) {
	var calls atomic.Int64
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		echo(w, r)
	}), pairConfig{server: ServerOptions{MaxHeaderBytes: 4 << 10}})
	for _, tc := range []struct {
		name   string
		in     string
		status int
		code   string
	}{
		{"text", "GARBAGE\r\n\r\n", http.StatusBadRequest, wire.CodeBadRequest},
		{"binary", "\x00\x01\x02\xff\xfe\r\n\r\n", http.StatusBadRequest, wire.CodeBadRequest},
		{"bad header", "GET / HTTP/1.1\r\nno colon here\r\n\r\n", http.StatusBadRequest, wire.CodeBadRequest},
		{"absolute target", "GET http://evil/ HTTP/1.1\r\nHost: evil\r\n\r\n", http.StatusBadRequest, wire.CodeBadRequest},
		{"bad length", "POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", http.StatusBadRequest, wire.CodeBadRequest},
		{"two lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", http.StatusBadRequest, wire.CodeBadRequest},
		{"connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", http.StatusMethodNotAllowed, wire.CodeUnsupported},
		{"version", "GET / HTTP/2.0\r\n\r\n", http.StatusHTTPVersionNotSupported, wire.CodeUnsupported},
		{"huge head", "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge, wire.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := p.rawStream(t)
			if _, err := io.WriteString(st, tc.in); err != nil {
				t.Fatal(err)
			}
			wantJSONError(t, readResponse(t, st), tc.status, tc.code)
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the service got %d of the bad requests", n)
	}
	// The Server is still fine.
	resp, err := p.http.Get(p.url("/svc/after"))
	if err != nil {
		t.Fatal(err)
	}
	if s := decodeSeen(t, resp); s.Path != "/after" {
		t.Errorf("after the garbage: upstream saw %q", s.Path)
	}
	// A peer that opens a stream and closes it without a word gets nothing.
	st := p.rawStream(t)
	_ = st.CloseWrite()
	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(st); len(b) != 0 {
		t.Errorf("empty stream answered %q (%v)", b, err)
	}
}

func TestStalledPeerIsDropped(t *testing.T) {
	bodyErr := make(chan error, 1)
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
	}), pairConfig{server: ServerOptions{HeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}})

	t.Run("half a head", func(t *testing.T) {
		st := p.rawStream(t)
		if _, err := io.WriteString(st, "GET /x HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		wantJSONError(t, readResponse(t, st), http.StatusRequestTimeout, wire.CodeTimeout)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("dropped after %s, header timeout 200ms", took)
		}
		eventually.True(t, 5*time.Second, "the stream to be let go", func() bool { return p.srv.InFlight() == 0 })
	})
	t.Run("half a body", func(t *testing.T) {
		st := p.rawStream(t)
		if _, err := io.WriteString(st, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-bodyErr:
			if err == nil {
				t.Error("the service read a cut body as whole")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the service was not released from a stalled body")
		}
		_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(st); err == nil {
			t.Error("the stream of a stalled body ended cleanly; want a reset")
		}
		eventually.True(t, 5*time.Second, "the stream to be let go", func() bool { return p.srv.InFlight() == 0 })
	})
}

func TestNotSent(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	get := func(to peer.ID) error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequest(http.MethodGet, "http://svc/x", nil)
		resp, err := p.tr.RoundTrip(ctx, to, req)
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}
	t.Run("peer without the protocol", func(t *testing.T) {
		other := p2ptest.Start(t, p2ptest.Spec{Bootstraps: []peer.AddrInfo{p.server.AddrInfo()}})
		p.client.Host().Peerstore().AddAddrs(other.ID(), other.Host().Addrs(), time.Minute)
		if err := get(other.ID()); !IsNotSent(err) {
			t.Errorf("got %v, want a not-sent error", err)
		}
	})
	t.Run("unknown peer", func(t *testing.T) {
		stranger := p2ptest.Start(t, p2ptest.Spec{})
		id := stranger.ID()
		_ = stranger.Close()
		if err := get(id); !IsNotSent(err) {
			t.Errorf("got %v, want a not-sent error", err)
		}
	})
	t.Run("closed server", func(t *testing.T) {
		if err := get(p.server.ID()); err != nil {
			t.Fatalf("before Close: %v", err)
		}
		if err := p.srv.Close(); err != nil {
			t.Fatal(err)
		}
		if err := get(p.server.ID()); !IsNotSent(err) {
			t.Errorf("got %v, want a not-sent error", err)
		}
	})
}

func TestLastRequestAndInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			started <- struct{}{}
			<-release
		}
	}), pairConfig{})
	if !p.srv.LastRequest().IsZero() || p.srv.InFlight() != 0 {
		t.Fatalf("fresh server: last %v, in flight %d", p.srv.LastRequest(), p.srv.InFlight())
	}
	before := time.Now()
	done := make(chan error, 1)
	go func() {
		resp, err := p.http.Get(p.url("/svc/hold"))
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	<-started
	if n := p.srv.InFlight(); n != 1 {
		t.Errorf("in flight %d during a request, want 1", n)
	}
	if last := p.srv.LastRequest(); last.Before(before) {
		t.Errorf("last request %v, before the request started at %v", last, before)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, "in flight to drop", func() bool { return p.srv.InFlight() == 0 })
}

// TestRequestsCountsForwardedRequests: Requests counts every request
// forwarded to the service, on new streams and kept-alive ones alike, and
// not one refused before it reaches the service.
func TestRequestsCountsForwardedRequests(t *testing.T) {
	p := startPair(t, http.HandlerFunc(echo), pairConfig{})
	if n := p.srv.Requests(); n != 0 {
		t.Fatalf("fresh server counts %d requests", n)
	}
	for i := range 3 {
		resp, err := p.http.Get(p.url("/svc/x"))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	if n := p.srv.Requests(); n != 3 {
		t.Errorf("after 3 requests the server counts %d", n)
	}
	st := p.rawStream(t)
	if _, err := io.WriteString(st, "GET http://evil/ HTTP/1.1\r\nHost: evil\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	wantJSONError(t, readResponse(t, st), http.StatusBadRequest, wire.CodeBadRequest)
	if n := p.srv.Requests(); n != 3 {
		t.Errorf("a refused request counted: %d, want 3", n)
	}
}

func TestCloseCutsRequestsAfterGrace(t *testing.T) {
	started := make(chan struct{}, 1)
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
	}), pairConfig{server: ServerOptions{ShutdownTimeout: 200 * time.Millisecond}})
	done := make(chan error, 1)
	go func() {
		resp, err := p.http.Get(p.url("/svc/hang"))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err == nil && resp.StatusCode < 500 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			} else {
				err = nil
			}
		}
		done <- err
	}()
	<-started
	start := time.Now()
	if err := p.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %s with a 200ms grace", took)
	}
	if err := <-done; err != nil {
		t.Errorf("request cut by Close: %v", err)
	}
}

func TestRoundTripContextCancel(t *testing.T) {
	gone := make(chan struct{})
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		close(gone)
	}), pairConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequest(http.MethodGet, "http://svc/x", nil)
	resp, err := p.tr.RoundTrip(ctx, p.server.ID(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cancel()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the service's request was not cancelled")
	}
}

func TestSplitPath(t *testing.T) {
	for _, tc := range []struct {
		in, service, uri string
		err              bool
	}{
		{"/svc/a/b?x=1", "svc", "/a/b?x=1", false},
		{"/svc?x=1", "svc", "/?x=1", false},
		{"/svc", "svc", "/", false},
		{"/svc/", "svc", "/", false},
		{"/svc/a%2Fb?q=%20", "svc", "/a%2Fb?q=%20", false},
		{"/sv%63/x", "svc", "/x", false},
		{"/svc?", "svc", "/?", false},
		{"/", "", "", true},
		{"", "", "", true},
		{"//x", "", "", true},
		{"/a%2Fb/x", "", "", true},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.in, err)
		}
		service, uri, err := SplitPath(u)
		if tc.err {
			if !errors.Is(err, ErrNoService) {
				t.Errorf("%q: got %q %q %v, want ErrNoService", tc.in, service, uri, err)
			}
			continue
		}
		if err != nil || service != tc.service || uri != tc.uri {
			t.Errorf("%q: got %q %q %v, want %q %q", tc.in, service, uri, err, tc.service, tc.uri)
		}
	}
}

func TestWriteError(t *testing.T) {
	rec := newRecorder()
	WriteError(rec, http.StatusServiceUnavailable, "no_capacity", `quote " and newline
in message`)
	var e wire.Error
	if err := json.Unmarshal(rec.body.Bytes(), &e); err != nil {
		t.Fatalf("body %q: %v", rec.body.Bytes(), err)
	}
	if rec.status != http.StatusServiceUnavailable || e.Code != "no_capacity" || !strings.Contains(e.Message, "newline") {
		t.Errorf("got %d %+v", rec.status, e)
	}
	if rec.header.Get(ErrorHeader) != "no_capacity" || rec.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", rec.header)
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: make(http.Header)} }

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

func TestRequestTrailersAndBareContentType(t *testing.T) {
	p := startPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = nil // the service sends none
		w.Header().Set("X-Got-Trailer", r.Trailer.Get("X-Checksum"))
		_, _ = io.WriteString(w, "<html>no type</html>")
	}), pairConfig{})
	for _, e := range p.entries() {
		t.Run(e.name, func(t *testing.T) { testRequestTrailersAndBareContentType(t, e) })
	}
}

func testRequestTrailersAndBareContentType(t *testing.T, e entry) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url("/t"), io.MultiReader(strings.NewReader("a"), strings.NewReader("b")))
	req.Trailer = http.Header{"X-Checksum": nil}
	req.ContentLength = -1
	req.Trailer.Set("X-Checksum", "c0ffee") // sent after the body
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if got := resp.Header.Get("X-Got-Trailer"); got != "c0ffee" {
		t.Errorf("service saw trailer X-Checksum %q, want c0ffee", got)
	}
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("Content-Type %q appeared on the way for %q", ct, body)
	}
}
