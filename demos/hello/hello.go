package main

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/physarum-p2p/physarum/demos/demoservice"
)

// Limits on what a request may ask for.
const (
	maxEchoBody = 1 << 20 // bytes echoed as JSON
	maxChunks   = 100000
	maxDelay    = time.Minute
	maxSleep    = 10 * time.Minute
	// defaultSleep is what /sleep waits without d.
	defaultSleep = time.Second
	// defaultChunks is what /stream writes without n.
	defaultChunks = 5
)

// wsGUID is the constant RFC 6455 appends to Sec-WebSocket-Key.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// hello serves hello's endpoints (see usage in main.go). Call shutdown
// when its server shuts down: long requests then end early and the
// connections /ws took over are closed, so that the server's graceful
// shutdown does not wait on them.
type hello struct {
	instance string
	mux      *http.ServeMux

	stopOnce sync.Once
	stopping chan struct{} // closed by shutdown

	mu       sync.Mutex
	stopped  bool                  // shutdown has run
	upgraded map[net.Conn]struct{} // connections /ws took over
}

// newHello returns the handler of hello, naming instance in its answers.
func newHello(instance string) *hello {
	h := &hello{
		instance: instance,
		stopping: make(chan struct{}),
		upgraded: map[net.Conn]struct{}{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.root)
	mux.HandleFunc("GET /healthz", demoservice.Healthz)
	mux.HandleFunc("/echo", h.echo)
	mux.HandleFunc("/echo/", h.echo)
	mux.HandleFunc("GET /stream", h.stream)
	mux.HandleFunc("GET /sleep", h.sleep)
	mux.HandleFunc("GET /ws", h.ws)
	h.mux = mux
	return h
}

func (h *hello) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// shutdown ends /stream and /sleep requests and closes /ws connections,
// now and from now on. It is safe to call more than once.
func (h *hello) shutdown() {
	h.stopOnce.Do(func() { close(h.stopping) })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for c := range h.upgraded {
		_ = c.Close()
	}
}

// errorReply is the body of every error hello answers.
type errorReply struct {
	Error string `json:"error"`
}

func (h *hello) root(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "hello from %s\n", h.instance)
}

// echoReply is what /echo answers: the request as the service saw it.
type echoReply struct {
	Instance   string      `json:"instance"`
	Method     string      `json:"method"`
	Path       string      `json:"path"`
	RequestURI string      `json:"request_uri"` // as on the request line
	Query      url.Values  `json:"query"`
	Proto      string      `json:"proto"`
	Host       string      `json:"host"`
	RemoteAddr string      `json:"remote_addr"`
	Headers    http.Header `json:"headers"`
	// ContentLength is -1 when the length was not given (a chunked body).
	ContentLength    int64    `json:"content_length"`
	TransferEncoding []string `json:"transfer_encoding,omitempty"`
	BodyLen          int      `json:"body_len"`
	// Body is the body when it is UTF-8; BodyBase64 carries it otherwise.
	Body       string `json:"body"`
	BodyBase64 string `json:"body_base64,omitempty"`
}

func (h *hello) echo(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("raw") {
		echoRaw(w, r)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEchoBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		demoservice.WriteJSON(w, http.StatusRequestEntityTooLarge, errorReply{
			Error: fmt.Sprintf("body larger than %d bytes; use /echo?raw to stream it back", maxEchoBody),
		})
		return
	case err != nil:
		demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: fmt.Sprintf("read body: %v", err)})
		return
	}
	reply := echoReply{
		Instance:         h.instance,
		Method:           r.Method,
		Path:             r.URL.Path,
		RequestURI:       r.RequestURI,
		Query:            r.URL.Query(),
		Proto:            r.Proto,
		Host:             r.Host,
		RemoteAddr:       r.RemoteAddr,
		Headers:          r.Header,
		ContentLength:    r.ContentLength,
		TransferEncoding: r.TransferEncoding,
		BodyLen:          len(body),
	}
	if utf8.Valid(body) {
		reply.Body = string(body)
	} else {
		reply.BodyBase64 = base64.StdEncoding.EncodeToString(body)
	}
	demoservice.WriteJSON(w, http.StatusOK, reply)
}

// echoRaw streams the request body back as it arrives, whatever its size,
// with the request's Content-Type (and Content-Length, when it was given).
func echoRaw(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// HTTP/1 handlers may not read the body once they answer, unless full
	// duplex is on; HTTP/2 is always full duplex and says not supported.
	_ = rc.EnableFullDuplex()
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	if r.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if ferr := rc.Flush(); ferr != nil {
				return
			}
		}
		if err != nil { // io.EOF at the end; anything else cuts the answer short
			return
		}
	}
}

func (h *hello) stream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := intParam(q, "n", defaultChunks, 0, maxChunks)
	if err != nil {
		demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
		return
	}
	delay, err := durationParam(q, "delay", 0, maxDelay)
	if err != nil {
		demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff") // browsers show chunks as they come
	rc := http.NewResponseController(w)
	for i := 1; i <= n; i++ {
		if i > 1 && delay > 0 && !h.wait(r.Context(), delay) {
			return // the client left, or the server is stopping: end the stream early
		}
		fmt.Fprintf(w, "chunk %d of %d\n", i, n)
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func (h *hello) sleep(w http.ResponseWriter, r *http.Request) {
	d, err := durationParam(r.URL.Query(), "d", defaultSleep, maxSleep)
	if err != nil {
		demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
		return
	}
	if !h.wait(r.Context(), d) {
		if r.Context().Err() == nil {
			demoservice.WriteJSON(w, http.StatusServiceUnavailable, errorReply{Error: "shutting down"})
		}
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "slept %s\n", d)
}

// wait waits for d, and reports false if ctx ended or the server began
// to shut down first.
func (h *hello) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-h.stopping:
		return false
	}
}

// ws answers an upgrade request with 101 Switching Protocols and then
// echoes every byte back until the client closes the connection. The
// handshake follows RFC 6455 (Sec-WebSocket-Accept is computed when the
// client sends a key), but what follows is a raw byte echo, not WebSocket
// framing: enough to check that a proxy passes an upgrade through and
// then relays both directions, not a WebSocket server.
func (h *hello) ws(w http.ResponseWriter, r *http.Request) {
	if !hasToken(r.Header, "Connection", "upgrade") || !hasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		demoservice.WriteJSON(w, http.StatusUpgradeRequired, errorReply{
			Error: "want an upgrade request: Connection: Upgrade and Upgrade: websocket",
		})
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		demoservice.WriteJSON(w, http.StatusInternalServerError, errorReply{
			Error: fmt.Sprintf("cannot take over the connection (upgrades need HTTP/1.1): %v", err),
		})
		return
	}
	defer conn.Close()
	if !h.track(conn) {
		return // shutting down
	}
	defer h.untrack(conn)
	_ = conn.SetDeadline(time.Time{}) // the server's header deadline no longer applies
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	if key := r.Header.Get("Sec-WebSocket-Key"); key != "" {
		brw.WriteString("Sec-WebSocket-Accept: " + wsAccept(key) + "\r\n")
	}
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	// brw.Reader first hands back what the client sent right after its
	// request, then reads the connection.
	_, _ = io.Copy(conn, brw.Reader)
}

// track records a connection /ws took over, so that shutdown closes it; it
// reports false when shutdown has already run.
func (h *hello) track(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	h.upgraded[c] = struct{}{}
	return true
}

func (h *hello) untrack(c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.upgraded, c)
}

// wsAccept is the Sec-WebSocket-Accept answer to key (RFC 6455 4.2.2).
func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// hasToken reports whether the comma-separated header name holds token,
// ignoring case.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// intParam reads the integer query parameter name, between lo and hi; def
// when it is absent.
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("parameter %s: %q is not a whole number from %d to %d", name, s, lo, hi)
	}
	return v, nil
}

// durationParam reads the duration query parameter name ("50ms", "2s"),
// from 0 to hi; def when it is absent.
func durationParam(q url.Values, name string, def, hi time.Duration) (time.Duration, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > hi {
		return 0, fmt.Errorf("parameter %s: %q is not a duration from 0s to %s, e.g. 50ms or 2s", name, s, hi)
	}
	return d, nil
}
