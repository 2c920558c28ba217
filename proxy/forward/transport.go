package forward

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

	"github.com/physarum-p2p/physarum/common/wire"
)

// TransportOptions tune a Transport. Zero fields take the defaults given.
type TransportOptions struct {
	// OpenTimeout bounds opening a stream: connecting to the peer when
	// needed and agreeing on Protocol (default 10s).
	OpenTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response head once the
	// request, body included, is written (default 40s). Keep it above the
	// Servers' ResponseHeaderTimeout, so that their 504 arrives first.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout bounds how long a body copy may make no progress
	// (default 60s); upgraded connections idle that long are closed.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a response head (default 1 MiB).
	MaxHeaderBytes int
	// MaxIdleStreams bounds the streams kept open to each peer for later
	// requests (default 16; negative: none, one stream per request).
	// Opening a stream costs more than a small request.
	MaxIdleStreams int
	// IdleStreamTimeout bounds how long a stream is kept between requests
	// (default 60s). Keep it below the Servers' KeepAliveTimeout, so that
	// a Server seldom closes a stream just as it is reused.
	IdleStreamTimeout time.Duration
}

func (o TransportOptions) withDefaults() TransportOptions {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.OpenTimeout, 10*time.Second)
	def(&o.ResponseHeaderTimeout, 40*time.Second)
	def(&o.IdleTimeout, 60*time.Second)
	def(&o.IdleStreamTimeout, 60*time.Second)
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	if o.MaxIdleStreams == 0 {
		o.MaxIdleStreams = 16
	}
	return o
}

// Transport is the client side of Protocol: it sends HTTP requests to the
// Servers of other peers. Like an http.Transport it keeps streams open
// between requests, a few per peer, and starts no goroutine of its own
// but one per request body it streams. It is safe for concurrent use.
type Transport struct {
	host host.Host
	opts TransportOptions

	mu        sync.Mutex
	idle      map[peer.ID][]*pooledStream // most recently used last
	lastSweep time.Time
}

// pooledStream is a stream with what reads and writes it, kept between
// requests.
type pooledStream struct {
	st    streamConn // a network.Stream, but for the fuzz test
	sio   *streamIO
	br    *bufio.Reader
	since time.Time // idle since
}

// NewTransport returns a Transport that opens streams from h.
func NewTransport(h host.Host, opts TransportOptions) *Transport {
	return &Transport{host: h, opts: opts.withDefaults(), idle: make(map[peer.ID][]*pooledStream)}
}

// CloseIdle closes the streams kept for later requests.
func (t *Transport) CloseIdle() {
	t.mu.Lock()
	idle := t.idle
	t.idle = make(map[peer.ID][]*pooledStream)
	t.mu.Unlock()
	for _, list := range idle {
		for _, ps := range list {
			_ = ps.st.Close()
		}
	}
}

// stream returns a kept stream to p, or a new one when fresh is set or
// none is kept.
func (t *Transport) stream(ctx context.Context, p peer.ID, fresh bool) (ps *pooledStream, reused bool, err error) {
	if !fresh {
		var expired []*pooledStream
		t.mu.Lock()
		list := t.idle[p]
		for len(list) > 0 && ps == nil {
			last := list[len(list)-1]
			list = list[:len(list)-1]
			if time.Since(last.since) > t.opts.IdleStreamTimeout {
				expired = append(expired, last)
			} else {
				ps = last
			}
		}
		t.idle[p] = list
		t.mu.Unlock()
		for _, e := range expired {
			_ = e.st.Close()
		}
		if ps != nil {
			return ps, true, nil
		}
	}
	octx, cancel := context.WithTimeout(ctx, t.opts.OpenTimeout)
	st, err := t.host.NewStream(octx, p, Protocol)
	cancel()
	if err != nil {
		return nil, false, notSent(fmt.Errorf("open stream to %s: %w", p, err))
	}
	return t.newPooledStream(st), false, nil
}

// newPooledStream readies a new stream for its first exchange.
func (t *Transport) newPooledStream(st streamConn) *pooledStream {
	ps := &pooledStream{st: st, sio: newStreamIO(st, t.opts.IdleTimeout, t.headLimit())}
	ps.br = bufio.NewReaderSize(ps.sio, readBufSize)
	return ps
}

func (t *Transport) headLimit() int { return t.opts.MaxHeaderBytes + readBufSize }

// put keeps ps for a later request to p, or closes it.
func (t *Transport) put(p peer.ID, ps *pooledStream) {
	if t.opts.MaxIdleStreams < 0 {
		_ = ps.st.Close()
		return
	}
	_ = ps.st.SetReadDeadline(time.Time{})
	_ = ps.st.SetWriteDeadline(time.Time{})
	ps.sio.reset(t.headLimit())
	now := time.Now()
	ps.since = now
	var drop []*pooledStream
	t.mu.Lock()
	list := append(t.idle[p], ps)
	if len(list) > t.opts.MaxIdleStreams {
		drop = append(drop, list[0])
		list = list[1:]
	}
	t.idle[p] = list
	if now.Sub(t.lastSweep) > t.opts.IdleStreamTimeout {
		// Streams to peers no longer asked expire here.
		t.lastSweep = now
		for q, l := range t.idle {
			i := 0
			for i < len(l) && now.Sub(l[i].since) > t.opts.IdleStreamTimeout {
				drop = append(drop, l[i])
				i++
			}
			if i == len(l) {
				delete(t.idle, q)
			} else {
				t.idle[q] = l[i:]
			}
		}
	}
	t.mu.Unlock()
	for _, d := range drop {
		_ = d.st.Close()
	}
}

// dropIdle closes the streams kept to p: one turned out to be closed by
// the Server, which usually means the others were too.
func (t *Transport) dropIdle(p peer.ID) {
	t.mu.Lock()
	list := t.idle[p]
	delete(t.idle, p)
	t.mu.Unlock()
	for _, ps := range list {
		_ = ps.st.Close()
	}
}

// inlineBody is the largest body of known length written with the request
// head, in one stream write and without a goroutine.
const inlineBody = 8 << 10

// RoundTrip sends req to the Server on peer p and returns its response.
//
// It sends req.Method, req.URL.RequestURI(), req.Host (or req.URL.Host),
// req.Header without hop-by-hop headers (an upgrade request keeps its
// "Connection: Upgrade" and Upgrade), and req.Body, framed by
// req.ContentLength (chunked when it is unknown) and followed by
// req.Trailer. The body is streamed while the response is read, and req.Body
// is closed, possibly after RoundTrip returns. ctx bounds the whole
// exchange, reading the response body included; req's own context is not
// used.
//
// The caller must close the response body; reading it to the end or
// closing it ends the exchange, and the stream is kept for a later request
// when it can be. A 101 response's Body is the upgraded connection: an
// io.ReadWriteCloser that also has CloseWrite.
//
// A request that finds its kept stream closed by the Server is sent again
// on a new stream when it has no body or has GetBody. A Server's own error
// responses (ErrorHeader set) come back as responses, except those saying
// that the service was not reached, which, like a failure to open the
// stream or a peer that does not serve Protocol, come back as an error for
// which IsNotSent is true. Any other error may come after the service got
// the request.
func (t *Transport) RoundTrip(ctx context.Context, p peer.ID, req *http.Request) (*http.Response, error) {
	body, cl := outgoingBody(req)
	method, uri, hostname, err := requestLine(req)
	if err != nil {
		closeBody(body)
		return nil, err
	}
	fresh := false
	for {
		ps, reused, err := t.stream(ctx, p, fresh)
		if err != nil {
			closeBody(body)
			return nil, err
		}
		resp, err := t.exchange(ctx, p, ps, reused, req, body, cl, method+" "+uri+" HTTP/1.1\r\n", hostname)
		if !errors.Is(err, errStale) {
			return resp, err
		}
		t.dropIdle(p)
		if body != nil {
			if req.GetBody == nil {
				return nil, notSent(fmt.Errorf("send request to %s: %w; its body cannot be sent again", p, err))
			}
			if body, err = req.GetBody(); err != nil {
				return nil, notSent(fmt.Errorf("send request to %s again: get body: %w", p, err))
			}
		}
		fresh = true
	}
}

// exchange sends one request on ps and reads the response head.
func (t *Transport) exchange(ctx context.Context, p peer.ID, ps *pooledStream, reused bool, req *http.Request,
	body io.ReadCloser, cl int64, line, hostname string) (*http.Response, error) {
	cs := &clientStream{t: t, ps: ps, peer: p, ctx: ctx, reused: reused, pending: sideRead}
	cs.stopCtx = context.AfterFunc(ctx, func() { _ = ps.st.Reset() })

	bw := getWriter(ps.sio)
	f := newHopFilter(req.Header, true)
	bw.WriteString(line)
	if hostname != "" {
		writeHeaderLine(bw, "Host", hostname)
	}
	f.write(bw, req.Header)
	writeFraming(bw, cl, req.Trailer, false)
	switch {
	case body == nil:
		err := bw.Flush()
		putWriter(bw)
		if err != nil {
			cs.done(sideRead, false)
			if reused && ctx.Err() == nil {
				return nil, errStale
			}
			return nil, notSent(fmt.Errorf("send request to %s: %w", p, errors.Join(ctx.Err(), err)))
		}
		cs.headDeadline()
	case cl > 0 && cl <= inlineBody:
		_, rerr, werr := copyBody(bw, body, cl, nil)
		putWriter(bw)
		closeBody(body)
		if rerr != nil {
			cs.done(sideRead, false)
			return nil, fmt.Errorf("read request body: %w", rerr)
		}
		if werr == nil {
			cs.headDeadline()
		} // else the response read reports what happened to the stream
	default:
		cs.pending |= sideWrite
		go cs.writeBody(bw, body, cl, req.Trailer)
	}
	return cs.readResponse(req)
}

// outgoingBody returns the body to send and its length, -1 when unknown.
// As for net/http clients, a non-nil body of length 0 is of unknown length.
func outgoingBody(req *http.Request) (io.ReadCloser, int64) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, 0
	}
	if req.ContentLength <= 0 {
		return req.Body, -1
	}
	return req.Body, req.ContentLength
}

func closeBody(b io.Closer) {
	if b != nil {
		_ = b.Close()
	}
}

// requestLine returns what the request line and Host header carry,
// refusing what could break the message apart.
func requestLine(req *http.Request) (method, uri, hostname string, err error) {
	if req.URL == nil {
		return "", "", "", errors.New("request has no URL")
	}
	method = req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !isToken(method) {
		return "", "", "", fmt.Errorf("invalid method %q", method)
	}
	uri = req.URL.RequestURI()
	hostname = req.Host
	if hostname == "" {
		hostname = req.URL.Host
	}
	if !printable(uri) || !printable(hostname) {
		return "", "", "", fmt.Errorf("invalid request target %q (host %q)", uri, hostname)
	}
	return method, uri, hostname, nil
}

// isToken reports whether s is an HTTP token (RFC 9110 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// printable reports whether s has no spaces or control bytes.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// Sides of an exchange, in clientStream.pending.
const (
	sideRead  = 1 << iota // the response, read to its end
	sideWrite             // the request body, written by a goroutine
)

// clientStream is one exchange of a Transport on a stream.
type clientStream struct {
	t       *Transport
	ps      *pooledStream
	peer    peer.ID
	ctx     context.Context
	reused  bool
	stopCtx func() bool

	// mu guards the fields below, and orders the writer's setting of the
	// response head deadline with the reader's move past the head.
	mu       sync.Mutex
	pending  int  // sides not yet over
	keep     bool // the Server keeps the stream for another request
	released bool

	bodyErr atomic.Pointer[error] // the request body's read failure
}

// writeBody streams the request body after the head, then starts the wait
// for the response head.
func (cs *clientStream) writeBody(bw *bufio.Writer, body io.ReadCloser, cl int64, trailer http.Header) {
	defer putWriter(bw)
	defer closeBody(body)
	// The head goes first: a Server may answer it before the body comes.
	werr := bw.Flush()
	var rerr error
	if werr == nil {
		_, rerr, werr = copyBody(bw, body, cl, nil)
	}
	if rerr == nil && werr == nil && cl < 0 {
		werr = endChunked(bw, trailer)
	}
	switch {
	case rerr != nil:
		// The Server must not take a cut body for a whole one: reset.
		cs.bodyErr.Store(&rerr)
		cs.done(sideWrite, false)
	case werr != nil:
		cs.done(sideWrite, false)
	default:
		cs.headDeadline()
		cs.done(sideWrite, true)
	}
}

// headDeadline starts the wait for the response head, unless the head
// has already come.
func (cs *clientStream) headDeadline() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.ps.sio.mode.Load() == readHead {
		_ = cs.ps.st.SetReadDeadline(time.Now().Add(cs.t.opts.ResponseHeaderTimeout))
	}
}

// done records that one side of the exchange is over, well or not. The
// stream is released once: reset as soon as a side fails; once both
// sides are over, kept for another request or closed; and when the Server
// will not keep it, as soon as the response is read.
func (cs *clientStream) done(side int, ok bool) {
	cs.mu.Lock()
	if cs.released {
		cs.mu.Unlock()
		return
	}
	cs.pending &^= side
	if ok && cs.pending != 0 && !(side == sideRead && !cs.keep) {
		cs.mu.Unlock()
		return
	}
	cs.released = true
	clean := ok && cs.pending == 0
	keep := cs.keep
	cs.mu.Unlock()

	stopped := cs.stopCtx()
	switch {
	case clean && stopped && keep && cs.ps.br.Buffered() == 0:
		cs.t.put(cs.peer, cs.ps)
	case clean:
		_ = cs.ps.st.Close()
	default:
		_ = cs.ps.st.Reset()
	}
}

func (cs *clientStream) readResponse(req *http.Request) (*http.Response, error) {
	resp, err := http.ReadResponse(cs.ps.br, req)
	if err != nil {
		return nil, cs.fail(err)
	}
	cs.mu.Lock()
	cs.ps.sio.body()
	cs.keep = !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols
	cs.mu.Unlock()

	if resp.Header.Get(ErrorHeader) == codeUnavailable {
		werr := readWireError(resp.Body, codeUnavailable)
		cs.done(sideRead, false)
		return nil, notSent(fmt.Errorf("instance %s: %w", cs.peer, werr))
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		want, got := upgradeOf(req.Header), upgradeOf(resp.Header)
		if want == "" || !strings.EqualFold(want, got) {
			cs.done(sideRead, false)
			return nil, fmt.Errorf("instance %s: switch to %q for an upgrade to %q: %w", cs.peer, got, want, ErrBadUpgrade)
		}
		cs.ps.sio.raw()
		resp.Body = &upgradedConn{cs: cs}
		return resp, nil
	}
	if resp.Body == http.NoBody {
		cs.done(sideRead, true)
		return resp, nil
	}
	resp.Body = &responseBody{cs: cs, r: resp.Body}
	return resp, nil
}

// fail ends the exchange after the response could not be read, and says
// why.
func (cs *clientStream) fail(err error) error {
	cs.done(sideRead, false)
	p := cs.peer
	if berr := cs.bodyErr.Load(); berr != nil {
		return fmt.Errorf("read request body: %w", *berr)
	}
	switch {
	case cs.ctx.Err() != nil:
		return fmt.Errorf("request to %s: %w", p, cs.ctx.Err())
	case cs.reused && cs.ps.sio.headRead() == 0 &&
		(errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, network.ErrReset)):
		// The Server closed the kept stream before the request reached it.
		return errStale
	case errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}):
		return notSent(fmt.Errorf("%s does not serve %s: %w", p, Protocol, err))
	case cs.ps.sio.hitLimit:
		return fmt.Errorf("response head from %s exceeds %d bytes: %w", p, cs.t.opts.MaxHeaderBytes, err)
	case isTimeout(err):
		return fmt.Errorf("no response head from %s within %s: %w", p, cs.t.opts.ResponseHeaderTimeout, err)
	}
	return fmt.Errorf("read response from %s: %w", p, err)
}

// readWireError decodes a proxy's JSON error body.
func readWireError(body io.Reader, code string) *wire.Error {
	e := &wire.Error{}
	b, _ := io.ReadAll(io.LimitReader(body, 4<<10))
	if json.Unmarshal(b, e) != nil || e.Code == "" {
		e.Code = code
	}
	return e
}

// responseBody is a response's Body: it ends the exchange at its end or
// when closed.
type responseBody struct {
	cs      *clientStream
	r       io.ReadCloser
	closed  atomic.Bool
	reading atomic.Bool
	eof     atomic.Bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	b.reading.Store(true)
	n, err := b.r.Read(p)
	b.reading.Store(false)
	switch {
	case errors.Is(err, io.EOF):
		b.eof.Store(true)
		b.cs.done(sideRead, true)
	case err != nil:
		b.cs.done(sideRead, false)
		err = b.cs.bodyFailed(err)
	}
	return n, err
}

// WriteTo copies the body to w in large reads: io.Copy prefers it to
// w's ReadFrom, which would read in small pieces.
func (b *responseBody) WriteTo(w io.Writer) (int64, error) {
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	var total int64
	for {
		n, err := b.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// maxDrain bounds what Close reads of a body's unread rest to keep its
// stream.
const maxDrain = 256 << 10

// Close ends the exchange. A body not read to its end resets the stream,
// unless its rest has already arrived (a JSON decoder typically leaves a
// newline): that is read, without waiting, and the stream kept.
func (b *responseBody) Close() error {
	if b.closed.Swap(true) || b.eof.Load() {
		return nil
	}
	if !b.reading.Load() {
		sio := b.cs.ps.sio
		sio.mode.Store(readRaw) // keep Read from pushing the deadline
		_ = b.cs.ps.st.SetReadDeadline(time.Now())
		if n, err := io.CopyN(io.Discard, b.r, maxDrain); n < maxDrain && errors.Is(err, io.EOF) {
			b.cs.done(sideRead, true)
			return nil
		}
	}
	b.cs.done(sideRead, false)
	return nil
}

func (cs *clientStream) bodyFailed(err error) error {
	switch {
	case cs.ctx.Err() != nil:
		return fmt.Errorf("read response body from %s: %w", cs.peer, cs.ctx.Err())
	case isTimeout(err):
		return fmt.Errorf("response body from %s stalled for %s: %w", cs.peer, cs.t.opts.IdleTimeout, err)
	}
	return fmt.Errorf("read response body from %s: %w", cs.peer, err)
}

// upgradedConn is the Body of a 101 response: the stream, now a raw pipe
// to the service's connection.
type upgradedConn struct{ cs *clientStream }

func (u *upgradedConn) Read(p []byte) (int, error)  { return u.cs.ps.br.Read(p) }
func (u *upgradedConn) Write(p []byte) (int, error) { return u.cs.ps.sio.Write(p) }

// CloseWrite tells the other side that no more bytes come.
func (u *upgradedConn) CloseWrite() error { return u.cs.ps.st.CloseWrite() }

// Close ends the connection both ways.
func (u *upgradedConn) Close() error {
	u.cs.done(sideRead, false)
	return nil
}
