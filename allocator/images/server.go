package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/physarum-p2p/physarum/common/wire"
)

// DefaultMaxTransfers bounds the transfers a node serves at once, each
// way: one more is told "busy" and tries another holder.
const DefaultMaxTransfers = 3

// ServerOptions configure a Server.
type ServerOptions struct {
	// MaxTransfers bounds gets served at once, and puts taken at once
	// (default DefaultMaxTransfers each).
	MaxTransfers int
	// MaxSize bounds an image stream taken by a put (default DefaultMaxSize).
	MaxSize int64
	// IdleTimeout is how long a transfer may stall (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Loaded learns of each image a put brought (to announce it).
	Loaded  func(id string)
	Logger  *slog.Logger
	Metrics *Metrics
}

// Server answers the image protocol from a Store: it sends held images to
// peers that need them and takes images that registry-cli hands over.
type Server struct {
	h     host.Host
	store Store
	opts  ServerOptions
	log   *slog.Logger
	out   chan struct{} // a slot per get in flight
	in    chan struct{} // a slot per put in flight

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
}

// Serve starts answering Protocol on h. Close stops it.
func Serve(h host.Host, store Store, opts ServerOptions) *Server {
	if opts.MaxTransfers <= 0 {
		opts.MaxTransfers = DefaultMaxTransfers
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		h: h, store: store, opts: opts, log: opts.Logger.With("component", "images"),
		out: make(chan struct{}, opts.MaxTransfers), in: make(chan struct{}, opts.MaxTransfers),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(Protocol, s.handle)
	return s
}

// Close stops serving, ends transfers in flight and waits for them.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.h.RemoveStreamHandler(Protocol)
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

func (s *Server) handle(st network.Stream) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = st.Reset()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	// The transfer ends with the server, or when its stream breaks.
	stop := context.AfterFunc(s.ctx, func() { _ = st.Reset() })
	defer stop()

	_ = st.SetDeadline(time.Now().Add(requestTimeout))
	b, err := wire.ReadFrame(st, maxRequest)
	var req Request
	if err == nil {
		req, err = DecodeRequest(b)
	} else {
		err = wire.Errorf(wire.CodeBadRequest, "image request: %v", err)
	}
	if err != nil {
		s.refuse(st, "", err)
		return
	}
	switch req.Op {
	case OpGet:
		s.serveGet(st, req.Image)
	case OpPut:
		s.servePut(st, req.Image)
	case OpHas:
		_, err := s.store.Size(s.ctx, req.Image)
		_ = wire.WriteResponse(st, Reply{Have: err == nil}, nil, maxReply)
		_ = st.Close()
	}
}

// refuse answers with err and closes the stream.
func (s *Server) refuse(st network.Stream, dir string, err error) {
	_ = wire.WriteResponse(st, nil, err, maxReply)
	_ = st.Close()
	if dir != "" {
		s.opts.Metrics.transfer(dir, reasonOf(err), 0, 0)
	}
	s.log.Debug("refused an image request", "peer", st.Conn().RemotePeer(), "err", err)
}

func (s *Server) serveGet(st network.Stream, id string) {
	peerID := st.Conn().RemotePeer()
	select {
	case s.out <- struct{}{}:
		defer func() { <-s.out }()
	default:
		s.refuse(st, "out", wire.Errorf(wire.CodeBusy, "already sending %d images; ask another holder", cap(s.out)))
		return
	}
	size, err := s.store.Size(s.ctx, id)
	if err != nil {
		code := wire.CodeInternal
		if errors.Is(err, ErrNotHeld) {
			code = wire.CodeNotFound
		}
		s.refuse(st, "out", wire.Errorf(code, "%v", err))
		return
	}
	if err := wire.WriteResponse(st, Reply{Size: size}, nil, maxReply); err != nil {
		_ = st.Reset()
		return
	}
	start := time.Now()
	n, err := send(s.ctx, st, s.store, id, s.opts.IdleTimeout, nil)
	took := time.Since(start)
	if err != nil {
		_ = st.Reset()
		s.opts.Metrics.transfer("out", reasonOf(err), n, took)
		s.log.Warn("image send failed", "image", id, "peer", peerID, "bytes", n, "err", err)
		return
	}
	_ = st.Close()
	s.opts.Metrics.transfer("out", "ok", n, took)
	s.log.Info("sent image", "image", id, "peer", peerID, "bytes", n, "seconds", took.Seconds(), "mib_per_s", rate(n, took))
}

func (s *Server) servePut(st network.Stream, id string) {
	peerID := st.Conn().RemotePeer()
	if _, err := s.store.Size(s.ctx, id); err == nil {
		// Told before the reply, so the image is kept and announced by
		// the time the pusher learns it is here.
		s.loaded(id)
		_ = wire.WriteResponse(st, Reply{Have: true}, nil, maxReply)
		_ = st.Close()
		return
	}
	select {
	case s.in <- struct{}{}:
		defer func() { <-s.in }()
	default:
		s.refuse(st, "in", wire.Errorf(wire.CodeBusy, "already taking %d images; try again", cap(s.in)))
		return
	}
	if err := wire.WriteResponse(st, Reply{}, nil, maxReply); err != nil {
		_ = st.Reset()
		return
	}
	start := time.Now()
	n, err := receive(s.ctx, st, s.store, id, s.opts.MaxSize, s.opts.IdleTimeout, nil)
	took := time.Since(start)
	s.opts.Metrics.transfer("in", reasonOf(err), n, took)
	if err != nil {
		s.log.Warn("image put refused", "image", id, "peer", peerID, "bytes", n, "err", err)
		_ = st.SetWriteDeadline(time.Now().Add(time.Second))
		_ = wire.WriteResponse(st, nil, wire.Errorf(codeOf(err), "%v", err), maxReply)
		_ = st.Close()
		return
	}
	s.loaded(id)
	_ = st.SetWriteDeadline(time.Now().Add(requestTimeout))
	_ = wire.WriteResponse(st, Reply{Loaded: id}, nil, maxReply)
	_ = st.Close()
	s.log.Info("took image", "image", id, "peer", peerID, "bytes", n, "seconds", took.Seconds(), "mib_per_s", rate(n, took))
}

// loaded tells Options.Loaded of an image a put brought or found.
func (s *Server) loaded(id string) {
	if s.opts.Loaded != nil {
		s.opts.Loaded(id)
	}
}

// codeOf is the wire code that tells a peer why its image was refused.
func codeOf(err error) string {
	switch {
	case errors.Is(err, ErrTooLarge):
		return wire.CodeTooLarge
	case errors.Is(err, ErrMismatch), errors.Is(err, ErrTruncated), errors.Is(err, ErrBadImage):
		return wire.CodeBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		return wire.CodeTimeout
	}
	return wire.CodeInternal
}

// reasonOf is the metrics label of a transfer's outcome.
func reasonOf(err error) string {
	if err == nil {
		return "ok"
	}
	switch code := wire.CodeOf(err); code {
	case wire.CodeBusy, wire.CodeNotFound, wire.CodeBadRequest, wire.CodeTooLarge, wire.CodeUnsupported:
		return code
	}
	switch {
	case errors.Is(err, ErrMismatch):
		return "mismatch"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrNotHeld):
		return "not_found"
	case errors.Is(err, ErrBadImage):
		return "bad_image"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error"
}

// rate is MiB/s, for logs.
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(n)/(1<<20)/d.Seconds())
}
