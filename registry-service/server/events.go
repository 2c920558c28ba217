package server

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/events"
)

// maxEventsRequest bounds the one request frame of an event stream.
const maxEventsRequest = 16 << 10

// sendFailed is a frame that could not be written: the reader has gone.
type sendFailed struct{ err error }

func (e sendFailed) Error() string { return "send event: " + e.err.Error() }
func (e sendFailed) Unwrap() error { return e.err }

// serveEvents serves registry.EventsProtocol: one EventsRequest, then a
// frame per event and heartbeat (one every registry.WatchPingEvery
// while nothing happens, so both ends notice a dead peer), until the
// reader goes, the server closes, or the stream ends: an end frame
// (without Follow) or an error frame (a gone index with the oldest one
// kept).
func (s *Server) serveEvents(st network.Stream) {
	if !s.track() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()

	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req registry.EventsRequest
	if err := wire.ReadJSON(st, &req, maxEventsRequest); err != nil {
		s.endEvents(st, registry.EventsFrame{Error: &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}})
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// The reader sends nothing more; its end closing (or the stream
	// resetting) means it has gone.
	_ = st.SetReadDeadline(time.Time{})
	go func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(st, 1))
		cancel()
	}()
	err := s.events.Stream(ctx, events.Request{EventsRequest: req, Heartbeat: registry.WatchPingEvery},
		func(e registry.Event) error {
			if err := s.sendEvents(st, registry.EventsFrame{Event: &e}); err != nil {
				return sendFailed{err}
			}
			return nil
		})
	var sf sendFailed
	switch {
	case err == nil:
		s.endEvents(st, registry.EventsFrame{End: true})
	case ctx.Err() != nil, errors.As(err, &sf):
		_ = st.Reset()
	default:
		f := registry.EventsFrame{Error: asWireError(err)}
		if ge, ok := errors.AsType[*registry.GoneError](err); ok {
			f.OldestIndex = ge.Oldest
		}
		s.endEvents(st, f)
	}
}

func (s *Server) sendEvents(st network.Stream, f registry.EventsFrame) error {
	_ = st.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return wire.WriteJSON(st, f, maxResponse)
}

func (s *Server) endEvents(st network.Stream, f registry.EventsFrame) {
	if err := s.sendEvents(st, f); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.Close()
}
