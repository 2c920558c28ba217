package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

// startHello serves a hello handler on a test server. Cleanup shuts the
// handler down first, so that long requests end before the server closes.
func startHello(t *testing.T) (*httptest.Server, *hello) {
	t.Helper()
	h := newHello("test-1")
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	t.Cleanup(h.shutdown)
	return ts, h
}

// do sends a request and returns the response with its whole body.
func do(t *testing.T, method, url string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return demotest.Do(t, req)
}

func wantStatus(t *testing.T, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body: %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, want, body)
	}
}

// wantJSONError checks an error answer: status, a JSON body, and an error
// message holding substr.
func wantJSONError(t *testing.T, resp *http.Response, body []byte, status int, substr string) {
	t.Helper()
	wantStatus(t, resp, body, status)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e errorReply
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, body)
	}
	if !strings.Contains(e.Error, substr) {
		t.Errorf("error %q does not mention %q", e.Error, substr)
	}
}

func TestRootAndHealthz(t *testing.T) {
	ts, _ := startHello(t)
	resp, body := do(t, "GET", ts.URL+"/", nil, nil)
	wantStatus(t, resp, body, 200)
	if string(body) != "hello from test-1\n" {
		t.Errorf("GET / = %q", body)
	}
	resp, body = do(t, "GET", ts.URL+"/healthz", nil, nil)
	wantStatus(t, resp, body, 200)
	if string(body) != "ok\n" {
		t.Errorf("GET /healthz = %q", body)
	}
	resp, body = do(t, "GET", ts.URL+"/nope", nil, nil)
	wantStatus(t, resp, body, 404)
	resp, body = do(t, "POST", ts.URL+"/healthz", nil, nil)
	wantStatus(t, resp, body, 405)
}

func decodeEcho(t *testing.T, body []byte) echoReply {
	t.Helper()
	var e echoReply
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("echo answer is not JSON: %v: %s", err, body)
	}
	return e
}

func TestEchoGet(t *testing.T) {
	ts, _ := startHello(t)
	resp, body := do(t, "GET", ts.URL+"/echo/a/b?x=1&x=2&y=%20z", nil, http.Header{"X-Test": {"v1", "v2"}})
	wantStatus(t, resp, body, 200)
	e := decodeEcho(t, body)
	if e.Instance != "test-1" || e.Method != "GET" || e.Path != "/echo/a/b" || e.RequestURI != "/echo/a/b?x=1&x=2&y=%20z" {
		t.Errorf("echo = %+v", e)
	}
	if got := e.Query["x"]; len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Errorf("query x = %q", got)
	}
	if got := e.Query.Get("y"); got != " z" {
		t.Errorf("query y = %q", got)
	}
	if got := e.Headers["X-Test"]; len(got) != 2 || got[1] != "v2" {
		t.Errorf("header X-Test = %q", got)
	}
	if e.Body != "" || e.BodyLen != 0 {
		t.Errorf("body %q (%d bytes), want none", e.Body, e.BodyLen)
	}
}

func TestEchoPost(t *testing.T) {
	ts, _ := startHello(t)
	resp, body := do(t, "POST", ts.URL+"/echo", strings.NewReader("hi there"), http.Header{"Content-Type": {"text/plain"}})
	wantStatus(t, resp, body, 200)
	e := decodeEcho(t, body)
	if e.Method != "POST" || e.Body != "hi there" || e.BodyLen != 8 || e.ContentLength != 8 {
		t.Errorf("echo = %+v", e)
	}

	bin := []byte{0xff, 0xfe, 0x00, 0x01}
	resp, body = do(t, "PUT", ts.URL+"/echo", bytes.NewReader(bin), nil)
	wantStatus(t, resp, body, 200)
	e = decodeEcho(t, body)
	if got, _ := base64.StdEncoding.DecodeString(e.BodyBase64); !bytes.Equal(got, bin) || e.Body != "" || e.Method != "PUT" {
		t.Errorf("binary body echoed as %+v", e)
	}

	// A body of unknown length arrives chunked.
	resp, body = do(t, "POST", ts.URL+"/echo", io.MultiReader(strings.NewReader("a"), strings.NewReader("b")), nil)
	wantStatus(t, resp, body, 200)
	e = decodeEcho(t, body)
	if e.Body != "ab" || e.ContentLength != -1 || len(e.TransferEncoding) != 1 || e.TransferEncoding[0] != "chunked" {
		t.Errorf("chunked body echoed as %+v", e)
	}

	resp, body = do(t, "POST", ts.URL+"/echo", bytes.NewReader(make([]byte, maxEchoBody+1)), nil)
	wantJSONError(t, resp, body, http.StatusRequestEntityTooLarge, "larger than")
}

func TestEchoRaw(t *testing.T) {
	ts, _ := startHello(t)
	big := make([]byte, 3<<20)
	rand.Read(big)
	resp, body := do(t, "POST", ts.URL+"/echo?raw", bytes.NewReader(big), http.Header{"Content-Type": {"application/x-test"}})
	wantStatus(t, resp, body, 200)
	if !bytes.Equal(body, big) {
		t.Errorf("raw echo returned %d bytes, not the %d sent", len(body), len(big))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-test" {
		t.Errorf("Content-Type %q", ct)
	}
}

// TestEchoRawStreams checks that the raw echo answers each piece of the
// body before the next is sent: the client only sends the second piece
// after it has read the first back.
func TestEchoRawStreams(t *testing.T) {
	ts, _ := startHello(t)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), "POST", ts.URL+"/echo?raw", pr)
	if err != nil {
		t.Fatal(err)
	}
	respc := make(chan *http.Response, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			errc <- err
			return
		}
		respc <- resp
	}()
	if _, err := pw.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	select {
	case resp = <-respc:
	case err := <-errc:
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first piece: %q, %v", line, err)
	}
	if _, err := pw.Write([]byte("second\n")); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("second piece: %q, %v", rest, err)
	}
}

func TestStream(t *testing.T) {
	ts, _ := startHello(t)
	resp, body := do(t, "GET", ts.URL+"/stream?n=3&delay=1ms", nil, nil)
	wantStatus(t, resp, body, 200)
	if want := "chunk 1 of 3\nchunk 2 of 3\nchunk 3 of 3\n"; string(body) != want {
		t.Errorf("stream = %q, want %q", body, want)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Transfer-Encoding %q, want chunked", resp.TransferEncoding)
	}
	resp, body = do(t, "GET", ts.URL+"/stream", nil, nil)
	wantStatus(t, resp, body, 200)
	if n := strings.Count(string(body), "\n"); n != defaultChunks {
		t.Errorf("default stream has %d chunks, want %d", n, defaultChunks)
	}
	for _, q := range []string{"n=-1", "n=x", "n=1000001", "delay=soon", "delay=-1s", "delay=2m"} {
		resp, body := do(t, "GET", ts.URL+"/stream?"+q, nil, nil)
		wantJSONError(t, resp, body, 400, "parameter "+q[:strings.IndexByte(q, '=')])
	}
}

// TestStreamFlushes reads the first chunk while the handler waits a minute
// before the second: it only arrives if the handler flushed it. Closing
// the body then ends the handler.
func TestStreamFlushes(t *testing.T) {
	ts, _ := startHello(t)
	startLongStream(t, ts.URL)
}

// startLongStream asks base for a stream of two chunks a minute apart and
// reads the first, which only arrives if the handler flushed it. It
// returns the rest of the body, which the test's cleanup closes.
func startLongStream(t *testing.T, base string) *bufio.Reader {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/stream?n=2&delay=1m", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "chunk 1 of 2\n" {
		t.Fatalf("first chunk: %q, %v", line, err)
	}
	return br
}

func TestSleep(t *testing.T) {
	ts, _ := startHello(t)
	resp, body := do(t, "GET", ts.URL+"/sleep?d=1ms", nil, nil)
	wantStatus(t, resp, body, 200)
	if string(body) != "slept 1ms\n" {
		t.Errorf("sleep = %q", body)
	}
	for _, d := range []string{"x", "-1s", "11m", "5"} {
		resp, body := do(t, "GET", ts.URL+"/sleep?d="+d, nil, nil)
		wantJSONError(t, resp, body, 400, "parameter d")
	}
}

func TestSleepEndsAtShutdown(t *testing.T) {
	ts, h := startHello(t)
	h.shutdown()
	resp, body := do(t, "GET", ts.URL+"/sleep?d=10m", nil, nil)
	wantJSONError(t, resp, body, http.StatusServiceUnavailable, "shutting down")
}

// dialUpgrade dials ts and sends a WebSocket upgrade request followed at
// once by early; it returns the connection and a reader on it.
func dialUpgrade(t *testing.T, ts *httptest.Server, early string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A guard against hanging forever, not a wait for a condition.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET /ws HTTP/1.1\r\nHost: test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" + early
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// upgrade is dialUpgrade, then it reads the 101 answer.
func upgrade(t *testing.T, ts *httptest.Server, early string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, br := dialUpgrade(t, ts, early)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	return conn, br, resp
}

func TestWebSocketEcho(t *testing.T) {
	ts, _ := startHello(t)
	conn, br, resp := upgrade(t, ts, "early")
	// The example of RFC 6455 section 1.3.
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept %q", got)
	}
	if !hasToken(resp.Header, "Upgrade", "websocket") || !hasToken(resp.Header, "Connection", "upgrade") {
		t.Errorf("upgrade headers %v", resp.Header)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "early" {
		t.Fatalf("bytes sent with the request came back as %q, %v", buf, err)
	}
	for _, msg := range []string{"ping", "\x00\x01binary\xff"} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo of %q: %q, %v", msg, buf, err)
		}
	}
}

func TestWebSocketClosedAtShutdown(t *testing.T) {
	ts, h := startHello(t)
	_, br, _ := upgrade(t, ts, "x")
	if b, err := br.ReadByte(); err != nil || b != 'x' {
		t.Fatalf("echo: %q, %v", b, err)
	}
	h.shutdown()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read after shutdown: %v, want EOF", err)
	}
	// Upgrades after shutdown are closed at once, unanswered.
	_, br = dialUpgrade(t, ts, "")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read on an upgrade after shutdown: %v, want EOF", err)
	}
}

func TestWebSocketNeedsUpgrade(t *testing.T) {
	ts, _ := startHello(t)
	resp, body := do(t, "GET", ts.URL+"/ws", nil, nil)
	wantJSONError(t, resp, body, http.StatusUpgradeRequired, "Upgrade: websocket")
	if resp.Header.Get("Upgrade") != "websocket" {
		t.Errorf("426 without Upgrade: websocket")
	}
	resp, body = do(t, "GET", ts.URL+"/ws", nil, http.Header{"Upgrade": {"websocket"}})
	wantJSONError(t, resp, body, http.StatusUpgradeRequired, "Connection: Upgrade")
}
