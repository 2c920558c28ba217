package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/physarum-p2p/physarum/common/wire"
)

// Protocol is the libp2p protocol between proxies: HTTP/1.1 requests and
// responses, one at a time, on a stream that is kept for further requests
// as an HTTP/1.1 connection is (see Server and Transport).
const Protocol protocol.ID = "/physarum/http/1.0.0"

// ServerOptions tune a Server. Zero fields take the defaults given.
type ServerOptions struct {
	// Logger receives per-request failures at debug level (default:
	// discard). Give it the service's name with Logger.With.
	Logger *slog.Logger
	// HeaderTimeout bounds reading a request's head: from the stream's
	// opening for its first request, from the first byte for later ones
	// (default 10s). A peer that has not sent a whole head by then gets 408
	// and its stream is closed.
	HeaderTimeout time.Duration
	// KeepAliveTimeout bounds how long a stream may wait for its next
	// request after a response (default 2m). Transports keep idle streams
	// for less (TransportOptions.IdleStreamTimeout).
	KeepAliveTimeout time.Duration
	// IdleTimeout bounds how long a body copy may make no progress, in
	// either direction (default 60s): a stalled peer or service fails the
	// request instead of pinning it. An upgraded connection (WebSocket) is
	// closed after IdleTimeout without traffic either way.
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the service's response
	// head once the request is written to it (default 30s). Past it the
	// client gets 504.
	ResponseHeaderTimeout time.Duration
	// DialTimeout bounds connecting to the service (default 5s).
	DialTimeout time.Duration
	// MaxHeaderBytes bounds a request's head, and a service's response head
	// (default 1 MiB, as net/http's).
	MaxHeaderBytes int
	// MaxIdleConns bounds the kept-alive connections to the service
	// (default 64).
	MaxIdleConns int
	// ShutdownTimeout bounds how long Close lets requests in flight finish
	// before it cuts them (default 10s).
	ShutdownTimeout time.Duration
}

func (o ServerOptions) withDefaults() ServerOptions {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.HeaderTimeout, 10*time.Second)
	def(&o.KeepAliveTimeout, 2*time.Minute)
	def(&o.IdleTimeout, 60*time.Second)
	def(&o.ResponseHeaderTimeout, 30*time.Second)
	def(&o.DialTimeout, 5*time.Second)
	def(&o.ShutdownTimeout, 10*time.Second)
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 64
	}
	return o
}

// Server is the service side of Protocol: it forwards every request that
// arrives on a stream to one service's local HTTP address and streams the
// answer back. A stream carries one request after another, as an HTTP/1.1
// connection does, until either side closes it. Its methods are safe for
// concurrent use.
type Server struct {
	host   host.Host // nil in the fuzz test
	target string
	opts   ServerOptions
	log    *slog.Logger
	client *http.Transport

	ctx    context.Context // ends when Close gives up waiting
	cancel context.CancelFunc

	inFlight atomic.Int64
	requests atomic.Uint64 // requests forwarded since the Server started
	last     atomic.Int64  // unix nanos of the last request's start or end
	closed   atomic.Bool

	mu        sync.Mutex
	streams   map[streamConn]*serverStream
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Serve starts serving Protocol on h, forwarding to the service at target
// (host:port, plain HTTP). One Server serves one service; a host runs at
// most one. Close stops it.
func Serve(h host.Host, target string, opts ServerOptions) (*Server, error) {
	s, err := newServer(target, opts)
	if err != nil {
		return nil, err
	}
	s.host = h
	h.SetStreamHandler(Protocol, s.handle)
	return s, nil
}

func newServer(target string, opts ServerOptions) (*Server, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("serve %q: %w", target, ErrBadTarget)
	}
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		target:  target,
		opts:    opts,
		log:     opts.Logger,
		ctx:     ctx,
		cancel:  cancel,
		streams: make(map[streamConn]*serverStream),
	}
	dialer := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	s.client = &http.Transport{
		Proxy:                  nil, // the service is local: never an environment proxy
		DialContext:            dialer.DialContext,
		MaxIdleConns:           opts.MaxIdleConns,
		MaxIdleConnsPerHost:    opts.MaxIdleConns,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  opts.ResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: int64(opts.MaxHeaderBytes),
		DisableCompression:     true, // pass bodies as they are
		WriteBufferSize:        copyBufSize,
		ReadBufferSize:         copyBufSize,
	}
	return s, nil
}

// LastRequest returns when the last request started (its head was read)
// or ended, or the zero time when none has come yet. With InFlight it
// tells whether the instance is idle.
func (s *Server) LastRequest() time.Time {
	ns := s.last.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// InFlight returns the number of requests being received or served,
// upgraded connections included. Streams kept open between requests do
// not count.
func (s *Server) InFlight() int { return int(s.inFlight.Load()) }

// Requests returns how many requests the Server has forwarded to the
// service since it started (upgraded connections included; a request
// refused before it reached the service, for a malformed head, is not
// counted). It only grows: the rate is the difference between two reads.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Close stops accepting streams, closes those waiting for a request, lets
// the requests in flight finish for up to ShutdownTimeout, then cuts the
// rest and waits for their goroutines. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(s.shutdown)
	return nil
}

func (s *Server) shutdown() {
	s.closed.Store(true)
	if s.host != nil {
		s.host.RemoveStreamHandler(Protocol)
	}
	for c, ss := range s.snapshot() {
		if ss.idle.Load() {
			_ = c.Close()
		}
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	grace := time.NewTimer(s.opts.ShutdownTimeout)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		// Reset before cancelling: a service that answers its cancelled
		// request at once must not get that answer back to the client as
		// if the request had completed.
		for c := range s.snapshot() {
			_ = c.Reset()
		}
		s.cancel()
		<-done
	}
	s.cancel()
	s.client.CloseIdleConnections()
}

// snapshot copies the open streams, to act on them without holding mu.
func (s *Server) snapshot() map[streamConn]*serverStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.streams)
}

// handle is the libp2p stream handler.
func (s *Server) handle(st network.Stream) {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		s.refuse(st)
		return
	}
	ss := s.newStream(st, st.Conn().RemotePeer().String())
	s.streams[st] = ss
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
		s.wg.Done()
	}()
	ss.serve()
}

// refuse answers a stream that arrived while closing: the request was not
// forwarded, so the client may try elsewhere.
func (s *Server) refuse(st network.Stream) {
	_ = st.SetWriteDeadline(time.Now().Add(time.Second))
	bw := getWriter(st)
	defer putWriter(bw)
	if writeErrorResponse(bw, http.StatusServiceUnavailable, codeUnavailable, "the instance is shutting down") != nil {
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

func (s *Server) touch() { s.last.Store(time.Now().UnixNano()) }

func (s *Server) headLimit() int { return s.opts.MaxHeaderBytes + readBufSize }

// serverStream is one stream a Server serves, request after request.
type serverStream struct {
	s    *Server
	c    streamConn
	from string // the peer, for X-Forwarded-For and logs
	sio  *streamIO
	br   *bufio.Reader
	bw   *bufio.Writer
	// brBusy is set when a reader may still use br after the stream is
	// done with it, so that it is not pooled.
	brBusy bool
	// idle is set while the stream waits for its next request.
	idle atomic.Bool

	// The watcher. Once a request has been read whole, a goroutine waits
	// for the first byte of the next one (br.Peek): the peer sends nothing
	// before the response is complete, so a read that fails meanwhile
	// means the peer reset the stream, and the service's request is
	// cancelled instead of running on for nobody. After the response the
	// same read is the wait for the next request.
	watchMu  sync.Mutex
	watching bool // a watcher was started; its result is (or will be) in peeked
	frozen   bool // the exchange is over: no watcher may start
	peeked   chan error
}

func (s *Server) newStream(c streamConn, from string) *serverStream {
	ss := &serverStream{s: s, c: c, from: from, peeked: make(chan error, 1)}
	ss.sio = newStreamIO(c, s.opts.IdleTimeout, s.headLimit())
	ss.br = getReader(ss.sio)
	ss.bw = getWriter(ss.sio)
	return ss
}

// serve serves the stream's requests until one of them ends it.
func (ss *serverStream) serve() {
	defer func() {
		if r := recover(); r != nil {
			ss.s.log.Error("forward handler panicked", "peer", ss.from, "panic", r, "stack", string(debug.Stack()))
			_ = ss.c.Reset()
			ss.brBusy = true // a goroutine may be left reading it
		}
		putWriter(ss.bw)
		if !ss.brBusy {
			putReader(ss.br)
		}
	}()
	_ = ss.c.SetReadDeadline(time.Now().Add(ss.s.opts.HeaderTimeout))
	for first := true; ss.serveOne(first) && ss.awaitNext(); first = false {
	}
}

// awaitNext waits for the next request's first byte. It reports false,
// having closed the stream, when none comes.
func (ss *serverStream) awaitNext() bool {
	s := ss.s
	ss.idle.Store(true)
	if s.closed.Load() { // Close may have missed this stream becoming idle
		_ = ss.c.Close()
	}
	_ = ss.c.SetReadDeadline(time.Now().Add(s.opts.KeepAliveTimeout))
	err := <-ss.peeked
	ss.idle.Store(false)
	ss.watchMu.Lock()
	ss.watching, ss.frozen = false, false
	ss.watchMu.Unlock()
	if err != nil || s.closed.Load() {
		_ = ss.c.Close()
		return false
	}
	_ = ss.c.SetReadDeadline(time.Now().Add(s.opts.HeaderTimeout))
	return true
}

// watch starts the watcher (see serverStream) unless the exchange is over.
// cancel ends the exchange's request to the service.
func (ss *serverStream) watch(cancel context.CancelFunc) {
	ss.watchMu.Lock()
	defer ss.watchMu.Unlock()
	if ss.watching || ss.frozen {
		return
	}
	ss.watching = true
	ss.sio.raw()
	go func() {
		_, err := ss.br.Peek(1)
		if err != nil && !errors.Is(err, io.EOF) {
			cancel()
		}
		ss.peeked <- err
	}()
}

// freeze ends the exchange for the watcher and reports whether one runs.
func (ss *serverStream) freeze() bool {
	ss.watchMu.Lock()
	defer ss.watchMu.Unlock()
	ss.frozen = true
	return ss.watching
}

// end closes (or resets) the stream and waits for the watcher, which the
// close releases.
func (ss *serverStream) end(reset bool) {
	if reset {
		_ = ss.c.Reset()
	} else {
		_ = ss.c.Close()
	}
	if ss.freeze() {
		<-ss.peeked
	}
}

// exchange is one request being served.
type exchange struct {
	*serverStream
	req  *http.Request
	body *requestBody // nil without a body
}

// serveOne serves one request and reports whether the stream stays open
// for the next; when it does not, it has ended the stream.
func (ss *serverStream) serveOne(first bool) (keep bool) {
	s := ss.s
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)

	ss.sio.head(s.headLimit())
	req, err := http.ReadRequest(ss.br)
	if err != nil {
		ss.badHead(err, first)
		return false
	}
	s.touch()
	defer s.touch()
	x := &exchange{serverStream: ss, req: req}
	if status, code, msg := checkRequest(req); status != 0 {
		x.fail(status, code, msg)
		return false
	}
	s.requests.Add(1)
	ss.sio.body()

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// Until the response head arrives, http.Transport bounds the wait; the
	// activity timer only catches a request body that stops moving.
	act := newActivity(max(s.opts.ResponseHeaderTimeout, s.opts.IdleTimeout)+5*time.Second, cancel)
	defer act.stop()

	upgrade := upgradeOf(req.Header) != ""
	out := &http.Request{
		Method:     req.Method,
		URL:        &url.URL{Scheme: "http", Host: s.target, Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, len(req.Header)+2),
		Host:       req.Host,
		Trailer:    req.Trailer,
	}
	if out.Host == "" {
		out.Host = s.target
	}
	f := newHopFilter(req.Header, true)
	f.copyTo(out.Header, req.Header)
	if len(out.Header["X-Forwarded-For"]) == 0 {
		addForwardedFor(out.Header, ss.from)
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // keep http.Transport from adding its own
	}
	switch {
	case upgrade:
	case req.ContentLength != 0:
		x.body = &requestBody{r: req.Body, act: act, onEOF: func() { ss.watch(cancel) }}
		out.Body = x.body
		out.ContentLength = req.ContentLength
	default:
		ss.watch(cancel)
	}
	defer func() {
		// The service's transport may still hold the body: once the stream
		// is closed under it, make sure it reads no more before br is
		// reused, or keep br out of the pool.
		if x.body != nil && !x.body.detach() {
			ss.brBusy = true
		}
	}()

	resp, err := s.client.RoundTrip(out.WithContext(ctx))
	if err != nil {
		x.roundTripFailed(err, act)
		return false
	}
	defer resp.Body.Close()
	delete(resp.Header, ErrorHeader)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		act.stop()
		x.tunnel(resp)
		return false
	}
	act.set(s.opts.IdleTimeout)

	// The stream can carry another request only once this one's body has
	// been read whole.
	keep = !req.Close && req.ProtoAtLeast(1, 1) && (x.body == nil || x.body.done()) && !s.closed.Load()
	hasBody := bodyAllowed(req.Method, resp.StatusCode)
	cl := resp.ContentLength
	if !hasBody {
		cl = 0
	}
	rf := newHopFilter(resp.Header, false)
	writeStatusLine(ss.bw, resp.StatusCode, resp.Status)
	rf.write(ss.bw, resp.Header)
	if !keep {
		ss.bw.WriteString("Connection: close\r\n")
	}
	if !hasBody && resp.StatusCode != http.StatusNoContent && resp.StatusCode >= 200 {
		// HEAD and 304 keep the length the service announced.
		if v := resp.Header.Get("Content-Length"); v != "" && isDigits(v) {
			writeHeaderLine(ss.bw, "Content-Length", v)
		}
	}
	writeFraming(ss.bw, cl, resp.Trailer, hasBody)
	if cl < 0 {
		// A streamed body: let the client see the head at once.
		if err := ss.bw.Flush(); err != nil {
			x.abort("write response head", err)
			return false
		}
	}
	_, rerr, werr := copyBody(ss.bw, resp.Body, cl, act.kick)
	if rerr == nil && werr == nil {
		if cl < 0 {
			werr = endChunked(ss.bw, resp.Trailer)
		} else {
			werr = ss.bw.Flush()
		}
	}
	switch {
	case werr != nil:
		x.abort("write response", werr)
		return false
	case rerr != nil:
		if act.fired.Load() {
			rerr = fmt.Errorf("no progress for %s: %w", s.opts.IdleTimeout, rerr)
		}
		x.abort("read response body from service", rerr)
		return false
	case !keep || !ss.freeze():
		ss.end(false)
		return false
	}
	return true
}

// checkRequest refuses what a Server does not forward.
func checkRequest(req *http.Request) (status int, code, msg string) {
	switch {
	case req.ProtoMajor != 1:
		return http.StatusHTTPVersionNotSupported, wire.CodeUnsupported, "only HTTP/1.x crosses a stream"
	case req.Method == http.MethodConnect:
		return http.StatusMethodNotAllowed, wire.CodeUnsupported, "CONNECT is not forwarded"
	case !strings.HasPrefix(req.RequestURI, "/"):
		return http.StatusBadRequest, wire.CodeBadRequest, "the request target must be a path"
	case !validHeaders(req.Header):
		return http.StatusBadRequest, wire.CodeBadRequest, "invalid header field"
	}
	return 0, "", ""
}

// badHead answers a stream whose request head could not be read.
func (ss *serverStream) badHead(err error, first bool) {
	x := &exchange{serverStream: ss}
	switch {
	case ss.sio.hitLimit:
		x.fail(http.StatusRequestHeaderFieldsTooLarge, wire.CodeTooLarge,
			fmt.Sprintf("request head exceeds %d bytes", ss.s.opts.MaxHeaderBytes))
	case isTimeout(err):
		x.fail(http.StatusRequestTimeout, wire.CodeTimeout,
			fmt.Sprintf("request head not received within %s", ss.s.opts.HeaderTimeout))
	case errors.Is(err, io.EOF) && first:
		// The peer closed without a request: nothing to answer.
		ss.end(false)
	default:
		msg := err.Error()
		if len(msg) > 200 {
			msg = msg[:200]
		}
		x.fail(http.StatusBadRequest, wire.CodeBadRequest, "malformed request: "+msg)
	}
}

// logger returns the exchange's logger. It is built only when something
// is logged: most requests log nothing.
func (x *exchange) logger() *slog.Logger {
	if x.req == nil {
		return x.s.log.With("peer", x.from)
	}
	return x.s.log.With("peer", x.from, "method", x.req.Method, "path", x.req.URL.Path)
}

// fail answers with an error and closes the stream. The peer may be gone
// or not reading: the answer gets a short write deadline.
func (x *exchange) fail(status int, code, msg string) {
	if x.s.log.Enabled(context.Background(), slog.LevelDebug) {
		x.logger().Debug("request refused", "status", status, "code", code, "message", msg)
	}
	_ = x.c.SetWriteDeadline(time.Now().Add(time.Second))
	err := writeErrorResponse(x.bw, status, code, msg)
	x.end(err != nil)
}

// abort resets the stream after a failure in the middle of a response,
// so that the client sees a broken response, never a short one.
func (x *exchange) abort(action string, err error) {
	if x.s.log.Enabled(context.Background(), slog.LevelDebug) {
		x.logger().Debug("request aborted", "action", action, "err", err)
	}
	x.end(true)
}

// roundTripFailed answers a request the service did not answer.
func (x *exchange) roundTripFailed(err error, act *activity) {
	s := x.s
	var op *net.OpError
	switch {
	case x.body != nil && x.body.failed() != nil:
		// The client's side broke while sending the body: nobody to answer.
		x.abort("read request body", x.body.failed())
	case s.ctx.Err() != nil:
		x.fail(http.StatusBadGateway, CodeBadGateway, "the instance is shutting down")
	case act.fired.Load():
		x.fail(http.StatusGatewayTimeout, wire.CodeTimeout,
			fmt.Sprintf("the request body made no progress for %s", s.opts.IdleTimeout))
	case errors.As(err, &op) && op.Op == "dial":
		x.fail(http.StatusBadGateway, codeUnavailable, "the service is not reachable")
	case isTimeout(err):
		x.fail(http.StatusGatewayTimeout, wire.CodeTimeout,
			fmt.Sprintf("the service did not answer within %s", s.opts.ResponseHeaderTimeout))
	default:
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			x.logger().Debug("service failed", "err", err)
		}
		x.fail(http.StatusBadGateway, CodeBadGateway, "the service failed before answering")
	}
}

// tunnel relays an upgraded connection: the 101 head, then raw bytes both
// ways until both sides are done or idle passes without traffic.
func (x *exchange) tunnel(resp *http.Response) {
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	want, got := upgradeOf(x.req.Header), upgradeOf(resp.Header)
	if !ok || want == "" || !strings.EqualFold(want, got) {
		x.fail(http.StatusBadGateway, CodeBadGateway, "the service switched protocols unasked")
		return
	}
	rf := newHopFilter(resp.Header, true)
	writeStatusLine(x.bw, resp.StatusCode, resp.Status)
	rf.write(x.bw, resp.Header)
	x.bw.WriteString("\r\n")
	if err := x.bw.Flush(); err != nil {
		x.abort("write 101 head", err)
		return
	}
	x.sio.raw()
	peerEnd := end{Reader: x.br, Writer: x.sio, closeWrite: x.c.CloseWrite, close: x.c.Reset}
	svcEnd := end{Reader: rwc, Writer: rwc, closeWrite: closeWriteOf(rwc), close: rwc.Close}
	pipe(peerEnd, svcEnd, x.s.opts.IdleTimeout)
	x.end(true)
}

// requestBody is the body of a forwarded request as the service's
// transport reads it. It reports progress, remembers the peer's failure,
// and can be cut off from the stream buffer it reads through.
type requestBody struct {
	mu       sync.Mutex
	r        io.Reader
	act      *activity
	onEOF    func() // called once, when the body has been read whole
	eof      bool
	err      error
	detached bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached {
		return 0, errDetached
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.act.kick()
	}
	if err == io.EOF && !b.eof {
		b.eof = true
		b.onEOF()
	}
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// Close is a no-op: detach ends the body.
func (b *requestBody) Close() error { return nil }

func (b *requestBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// done reports whether the body has been read whole.
func (b *requestBody) done() bool {
	if !b.mu.TryLock() {
		return false // a read is under way
	}
	defer b.mu.Unlock()
	return b.eof
}

// detach ends the body for its reader. It must run after the stream is
// closed or reset, so that a read in progress returns; it reports whether
// it got the lock soon enough to promise that no read is under way.
func (b *requestBody) detach() bool {
	if !b.mu.TryLock() {
		// A read is in progress and the stream is closed: it will return,
		// but do not wait for it; the caller just does not reuse the buffer.
		return false
	}
	b.detached = true
	b.mu.Unlock()
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
