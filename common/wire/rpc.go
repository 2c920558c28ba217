package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// DefaultTimeout bounds one request/response exchange when neither the
// caller's context nor the protocol sets a shorter one.
const DefaultTimeout = 10 * time.Second

// response is the envelope of every reply: exactly one field is set.
type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Request is one decoded request as a Handler sees it.
type Request struct {
	// Peer is the authenticated sender (libp2p checked its key).
	Peer peer.ID
	// Body is the raw JSON payload of the request frame.
	Body json.RawMessage
}

// Decode unmarshals the request body into v, rejecting unknown fields so
// that a typo in a client's request is reported, not silently ignored.
func (r Request) Decode(v any) error {
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeBadRequest, "malformed request: %v", err)
	}
	// One frame, one request: a second value after it would be ignored
	// without a word (a delete sent after a get would never run).
	if dec.More() {
		return Errorf(CodeBadRequest, "malformed request: more than one JSON value in the frame")
	}
	return nil
}

// Handler answers one request. A returned *Error is sent as is; any other
// error is sent with code "internal". The context ends at the stream's
// deadline or when the Server closes.
type Handler func(ctx context.Context, req Request) (any, error)

// Observer learns of every request served: protocol, error code ("" on
// success) and how long it took. Used for metrics; it must not block.
type Observer func(proto protocol.ID, code string, took time.Duration)

// HandleOptions bound one protocol's streams.
type HandleOptions struct {
	// MaxRequest is the largest request frame accepted (default DefaultMaxFrame).
	MaxRequest int
	// MaxResponse is the largest response frame sent (default DefaultMaxFrame).
	MaxResponse int
	// Timeout bounds the whole exchange, reading included (default DefaultTimeout).
	Timeout time.Duration
}

func (o HandleOptions) withDefaults() HandleOptions {
	if o.MaxRequest <= 0 {
		o.MaxRequest = DefaultMaxFrame
	}
	if o.MaxResponse <= 0 {
		o.MaxResponse = DefaultMaxFrame
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// Server serves request/response protocols on a host. Handlers run with a
// context derived from the Server's lifetime; Close removes the protocols and
// waits for handlers in flight.
type Server struct {
	host     host.Host
	log      *slog.Logger
	observer Observer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	protos []protocol.ID
	closed bool
}

// NewServer returns a Server on h. observer may be nil.
func NewServer(h host.Host, log *slog.Logger, observer Observer) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{host: h, log: log, observer: observer, ctx: ctx, cancel: cancel}
}

// Handle registers fn for proto. Registering after Close is a no-op.
func (s *Server) Handle(proto protocol.ID, fn Handler, opts HandleOptions) {
	opts = opts.withDefaults()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.protos = append(s.protos, proto)
	s.host.SetStreamHandler(proto, func(st network.Stream) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = st.Reset()
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		defer s.wg.Done()
		s.serve(st, proto, fn, opts)
	})
}

// Close stops accepting streams, cancels handlers and waits for them.
// It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, p := range s.protos {
		s.host.RemoveStreamHandler(p)
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

func (s *Server) serve(st network.Stream, proto protocol.ID, fn Handler, opts HandleOptions) {
	start := time.Now()
	deadline := start.Add(opts.Timeout)
	_ = st.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	defer cancel()

	body, err := ReadFrame(st, opts.MaxRequest)
	var result any
	if err == nil {
		result, err = s.call(ctx, fn, Request{Peer: st.Conn().RemotePeer(), Body: body})
	} else {
		err = framingError(err)
	}
	if time.Now().After(deadline) {
		// The deadline has passed: allow a moment to tell the peer why.
		_ = st.SetWriteDeadline(time.Now().Add(time.Second))
	}
	werr := WriteResponse(st, result, err, opts.MaxResponse)
	code := CodeOf(err)
	if err != nil && code == "" {
		code = CodeInternal
	}
	if s.observer != nil {
		s.observer(proto, code, time.Since(start))
	}
	if werr != nil {
		s.log.Debug("write response", "protocol", proto, "peer", st.Conn().RemotePeer(), "err", werr)
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

// call runs the handler, turning a panic into an internal error so that one
// bad request cannot take the daemon down.
func (s *Server) call(ctx context.Context, fn Handler, req Request) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("handler panicked", "peer", req.Peer, "panic", r, "stack", string(debug.Stack()))
			err = Errorf(CodeInternal, "handler failed")
		}
	}()
	return fn(ctx, req)
}

// framingError maps a read failure to what the peer is told.
func framingError(err error) *Error {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return &Error{Code: CodeTooLarge, Message: err.Error()}
	case isTimeout(err):
		return &Error{Code: CodeTimeout, Message: "request not received before the deadline"}
	default:
		return &Error{Code: CodeBadRequest, Message: err.Error()}
	}
}

// WriteResponse writes the reply envelope of a request: err (an *Error as
// it is, any other error as "internal") or result. Protocols that stream
// after a reply (image transfer) write their reply with it, so that
// DecodeResponse reads it as it reads a Call's.
func WriteResponse(st io.Writer, result any, err error, max int) error {
	var resp response
	if err != nil {
		var we *Error
		if !errors.As(err, &we) {
			we = &Error{Code: CodeInternal, Message: err.Error()}
		}
		resp.Error = we
	} else {
		b, merr := json.Marshal(result)
		if merr != nil {
			resp.Error = Errorf(CodeInternal, "encode response: %v", merr)
		} else {
			resp.Result = b
		}
	}
	b, merr := json.Marshal(resp)
	if merr != nil {
		return merr
	}
	if len(b) > max {
		b, _ = json.Marshal(response{Error: Errorf(CodeTooLarge, "response of %d bytes exceeds the limit of %d", len(b), max)})
	}
	return WriteFrame(st, b, max)
}

// CallOptions bound one Call.
type CallOptions struct {
	// MaxResponse is the largest response accepted (default DefaultMaxFrame).
	MaxResponse int
	// Timeout bounds the exchange when ctx has no earlier deadline
	// (default DefaultTimeout).
	Timeout time.Duration
}

// Call sends req to p over proto and decodes the reply into resp (which may
// be nil). A refusal by the server comes back as *Error.
func Call(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, req, resp any, opts CallOptions) error {
	if opts.MaxResponse <= 0 {
		opts.MaxResponse = DefaultMaxFrame
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	st, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return fmt.Errorf("open %s stream to %s: %w", proto, p.ShortString(), err)
	}
	// Reset unblocks a read or write when ctx ends before the deadline.
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	deadline, _ := ctx.Deadline()
	_ = st.SetDeadline(deadline)

	if err := WriteJSON(st, req, DefaultMaxFrame); err != nil {
		_ = st.Reset()
		return fmt.Errorf("send %s request: %w", proto, err)
	}
	_ = st.CloseWrite()
	b, err := ReadFrame(st, opts.MaxResponse)
	if err != nil {
		_ = st.Reset()
		if ctx.Err() != nil {
			return fmt.Errorf("%s to %s: %w", proto, p.ShortString(), ctx.Err())
		}
		if isTimeout(err) {
			return fmt.Errorf("%s to %s: no answer in time: %w", proto, p.ShortString(), context.DeadlineExceeded)
		}
		return fmt.Errorf("read %s response: %w", proto, err)
	}
	_ = st.Close()
	if err := DecodeResponse(b, resp); err != nil {
		return fmt.Errorf("%s: %w", proto, err)
	}
	return nil
}

// DecodeResponse decodes a response frame's payload: the server's *Error,
// or the result decoded into resp (which may be nil).
func DecodeResponse(b []byte, resp any) error {
	var r response
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	if r.Error != nil {
		if r.Error.Code == "" {
			r.Error.Code = CodeInternal
		}
		return r.Error
	}
	if resp == nil || len(r.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Result, resp); err != nil {
		return fmt.Errorf("decode result: %w", err)
	}
	return nil
}

// isTimeout reports whether err is a deadline expiring on a stream.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
