package forward

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/wire"
)

// SplitPath splits the URL of a request to a client proxy,
// /<service>/<rest>?<query>, into the service's name and the request URI
// an instance should see, /<rest>?<query>. The rest keeps its escaping; a
// query right after the name ("/svc?x=1") goes with "/" ("/?x=1").
func SplitPath(u *url.URL) (service, uri string, err error) {
	p := u.EscapedPath()
	if !strings.HasPrefix(p, "/") {
		return "", "", fmt.Errorf("split %q: %w", p, ErrNoService)
	}
	seg, rest, _ := strings.Cut(p[1:], "/")
	service, err = url.PathUnescape(seg)
	if err != nil || service == "" || strings.Contains(service, "/") {
		return "", "", fmt.Errorf("split %q: %w", p, ErrNoService)
	}
	uri = "/" + rest
	if u.RawQuery != "" || u.ForceQuery {
		uri += "?" + u.RawQuery
	}
	return service, uri, nil
}

// Forward sends r to the Server on peer p as a request for uri (the path
// and query the instance should see; see SplitPath) and writes the answer
// to w: a client proxy's whole job for one request once it has chosen the
// instance.
//
// r's method, end-to-end headers, Host, body and trailers pass on, and
// X-Forwarded-For gains the host of r.RemoteAddr. The response streams to
// w as it arrives (what has come is flushed whenever the stream has
// nothing more for the moment), and trailers follow it. A 101 answer to an
// upgrade request takes over r's connection (hijacking it) and pipes it to
// the instance until either side ends or the Transport's IdleTimeout
// passes without traffic. w must give access to net/http's own writer
// (directly or through an Unwrap method, see http.ResponseController) for
// flushing, full-duplex bodies and hijacking.
//
// When the request was not sent (IsNotSent(err)), Forward has written
// nothing and read nothing of r's body, so the caller can try another
// instance with the same r, or answer 502 with WriteError. Another failure
// before the response started is answered with a JSON error (502, or 504
// on a timeout) unless the client has gone. A failure in the middle of a
// response cuts the client's connection, so that it cannot take a short
// body for a whole one: by hijacking it, or, where w cannot be hijacked
// (HTTP/2), with panic(http.ErrAbortHandler) as
// net/http/httputil.ReverseProxy does.
func (t *Transport) Forward(w http.ResponseWriter, r *http.Request, p peer.ID, uri string) error {
	ctx := r.Context()
	u, err := url.ParseRequestURI(uri)
	if err != nil || !strings.HasPrefix(uri, "/") {
		WriteError(w, http.StatusBadRequest, wire.CodeBadRequest, "invalid request path")
		return fmt.Errorf("forward to %s: invalid request URI %q", p, uri)
	}
	rc := http.NewResponseController(w)
	upgrade := upgradeOf(r.Header) != ""
	if !upgrade {
		// Stream the body while the response comes: without this, net/http
		// would swallow the unread body when the response starts.
		_ = rc.EnableFullDuplex()
	}
	out := &http.Request{
		Method:     r.Method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     r.Header.Clone(),
		Host:       r.Host,
		Trailer:    r.Trailer,
	}
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	// net/http answered the client's Expect when the body was first read;
	// it does not go further.
	delete(out.Header, "Expect")
	addForwardedFor(out.Header, r.RemoteAddr)
	var body *spentBody
	if r.ContentLength != 0 && r.Body != nil && !upgrade {
		body = &spentBody{rc: r.Body}
		out.Body = body
		out.ContentLength = r.ContentLength
	}

	resp, err := t.RoundTrip(ctx, p, out)
	if err != nil && IsNotSent(err) && body != nil && !body.release() {
		// The service did not get the request, but part of its body is
		// gone: it cannot go to another instance, so it is not "not sent"
		// for the caller.
		var ns *notSentError
		errors.As(err, &ns)
		err = fmt.Errorf("forward to %s: %w (the request body was already read: it cannot be sent elsewhere)", p, ns.err)
		if ctx.Err() == nil {
			WriteError(w, http.StatusBadGateway, wire.CodeUnavailable, "the instance could not be reached")
		}
		return err
	}
	if err != nil && !IsNotSent(err) && ctx.Err() == nil && !isTimeout(err) && body == nil && !upgrade && idempotent(r.Method) {
		// The instance failed (died?) after getting a request that is
		// safe to repeat and has no body to replay: nothing is written, so
		// the caller can send it to another instance.
		return fmt.Errorf("forward to %s: %w: %w", p, ErrNoResponse, err)
	}
	if err != nil {
		switch {
		case IsNotSent(err), ctx.Err() != nil:
		case isTimeout(err):
			WriteError(w, http.StatusGatewayTimeout, wire.CodeTimeout, "the instance did not answer in time")
		case errors.Is(err, ErrBadUpgrade):
			WriteError(w, http.StatusBadGateway, CodeBadGateway, "the instance switched protocols unasked")
		default:
			WriteError(w, http.StatusBadGateway, CodeBadGateway, "the instance failed before answering")
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return t.forwardUpgrade(w, rc, resp, p)
	}

	h := w.Header()
	f := newHopFilter(resp.Header, false)
	f.copyTo(h, resp.Header)
	if _, ok := resp.Header["Content-Type"]; !ok {
		h["Content-Type"] = nil // keep net/http from guessing one
	}
	declared := trailerKeys(resp.Trailer)
	if len(declared) > 0 {
		h["Trailer"] = declared
	}
	streamed := resp.ContentLength < 0
	w.WriteHeader(resp.StatusCode)
	if streamed {
		_ = rc.Flush()
	}

	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write response to client: %w", werr)
			}
			// A short read means the instance has sent nothing more yet:
			// let the client have what came, rather than hold it in
			// net/http's buffer until more arrives.
			if streamed || n < len(buf) {
				_ = rc.Flush()
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			abortClient(rc)
			return rerr
		}
	}
	for k, vs := range resp.Trailer {
		if !contains(declared, k) {
			k = http.TrailerPrefix + k
		}
		h[k] = vs
	}
	return nil
}

// spentBody lends r.Body to one attempt to forward r. It tells whether
// any of it was read, and can be taken back so that another attempt can
// read r.Body without this one competing for it.
type spentBody struct {
	mu       sync.Mutex
	rc       io.ReadCloser
	spent    bool
	released bool
}

func (b *spentBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released {
		return 0, errDetached
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		b.spent = true
	}
	return n, err
}

// Close is a no-op: net/http closes r.Body when the handler returns, and
// a closed body could not be sent again.
func (b *spentBody) Close() error { return nil }

// release takes the body back from this attempt. It reports whether none
// of it was read; a read under way counts as read.
func (b *spentBody) release() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	b.released = true
	return !b.spent
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// abortClient cuts the client's connection in the middle of a response.
func abortClient(rc *http.ResponseController) {
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// forwardUpgrade takes over the client's connection after a 101 and pipes
// it to the upgraded stream.
func (t *Transport) forwardUpgrade(w http.ResponseWriter, rc *http.ResponseController, resp *http.Response, p peer.ID) error {
	up, ok := resp.Body.(*upgradedConn)
	if !ok {
		WriteError(w, http.StatusBadGateway, CodeBadGateway, "the instance switched protocols unasked")
		return fmt.Errorf("instance %s: 101 without a connection: %w", p, ErrBadUpgrade)
	}
	conn, brw, err := rc.Hijack()
	if err != nil {
		WriteError(w, http.StatusBadGateway, wire.CodeUnsupported, "this connection cannot be upgraded")
		return fmt.Errorf("hijack client connection for an upgrade: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})
	f := newHopFilter(resp.Header, true)
	writeStatusLine(brw.Writer, resp.StatusCode, resp.Status)
	f.write(brw.Writer, resp.Header)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return fmt.Errorf("write 101 to client: %w", err)
	}
	client := end{Reader: brw.Reader, Writer: conn, closeWrite: closeWriteOf(conn), close: conn.Close}
	instance := end{Reader: up, Writer: up, closeWrite: up.CloseWrite, close: up.Close}
	pipe(client, instance, t.opts.IdleTimeout)
	return nil
}

// idempotent reports whether a request with method m may be sent twice
// (RFC 9110, section 9.2.2).
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}
