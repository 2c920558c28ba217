package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// maxWatchRequest bounds the one request frame of a watch.
const maxWatchRequest = 4 << 10

// serveWatch streams a snapshot of instance records, then every change,
// until the client goes away or the server closes. Idle streams carry a
// ping every WatchPingEvery so both ends notice a dead peer.
func (s *Server) serveWatch(st network.Stream) {
	if !s.track() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	s.metrics.watchOpened(1)
	defer s.metrics.watchOpened(-1)

	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req registry.WatchRequest
	if err := wire.ReadJSON(st, &req, maxWatchRequest); err != nil {
		s.endWatch(st, &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()})
		return
	}
	if req.Kind != registry.WatchKindInstances {
		s.endWatch(st, wire.Errorf(wire.CodeBadRequest, "unknown watch kind %q", req.Kind))
		return
	}
	if req.Service != "" {
		if err := registry.ValidateName(req.Service); err != nil {
			s.endWatch(st, &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()})
			return
		}
	}

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// The client sends nothing more; its end of the stream closing (or the
	// stream resetting) means it has gone.
	_ = st.SetReadDeadline(time.Time{})
	go func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(st, 1))
		cancel()
	}()

	insts, rev, err := s.store.ListInstances(ctx, req.Service)
	if err != nil {
		s.endWatch(st, asWireError(err))
		return
	}
	if err := s.send(st, registry.WatchEvent{Type: registry.EventSnapshot, Instances: insts, Revision: rev}); err != nil {
		_ = st.Reset()
		return
	}
	wch := s.member.Client().Watch(clientv3.WithRequireLeader(ctx), instancePrefix(req.Service),
		clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	ping := time.NewTicker(registry.WatchPingEvery)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = st.Reset()
			return
		case <-ping.C:
			if err := s.send(st, registry.WatchEvent{Type: registry.EventPing, Revision: rev}); err != nil {
				_ = st.Reset()
				return
			}
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil {
				// Compaction or a lost leader: the client re-syncs from a
				// new snapshot, elsewhere if need be.
				s.endWatch(st, wire.Errorf(wire.CodeUnavailable, "watch ended: %v", wr.Err()))
				return
			}
			for _, ev := range wr.Events {
				rev = ev.Kv.ModRevision
				out := registry.WatchEvent{Revision: rev}
				if ev.Type == clientv3.EventTypeDelete {
					out.Type, out.ID = registry.EventDelete, instanceIDFromKey(string(ev.Kv.Key))
				} else {
					var inst registry.Instance
					if json.Unmarshal(ev.Kv.Value, &inst) != nil {
						continue
					}
					out.Type, out.Instances = registry.EventPut, []registry.Instance{inst}
				}
				if err := s.send(st, out); err != nil {
					_ = st.Reset()
					return
				}
			}
		}
	}
}

func (s *Server) send(st network.Stream, ev registry.WatchEvent) error {
	_ = st.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return wire.WriteJSON(st, ev, maxResponse)
}

func (s *Server) endWatch(st network.Stream, e *wire.Error) {
	if err := s.send(st, registry.WatchEvent{Type: "error", Error: e}); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

func asWireError(err error) *wire.Error {
	var we *wire.Error
	if errors.As(err, &we) {
		return we
	}
	return &wire.Error{Code: wire.CodeInternal, Message: err.Error()}
}
