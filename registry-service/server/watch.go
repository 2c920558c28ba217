package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
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
	routes, err := s.readRoutes(ctx, req.Service, rev)
	if err != nil {
		s.endWatch(st, asWireError(err))
		return
	}
	snap := registry.WatchEvent{Type: registry.EventSnapshot, Instances: insts, Revision: rev}
	for _, rt := range routes {
		snap.Routes = append(snap.Routes, rt)
	}
	if err := s.send(st, snap); err != nil {
		_ = st.Reset()
		return
	}
	wctx := clientv3.WithRequireLeader(ctx)
	wch := s.member.Client().Watch(wctx, instancePrefix(req.Service), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	rch := s.member.Client().Watch(wctx, routeKey(req.Service), routeWatchOpts(req.Service, rev+1)...)
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
		case wr, ok := <-rch:
			if !ok || wr.Err() != nil {
				s.endWatch(st, wire.Errorf(wire.CodeUnavailable, "watch ended: %v", wr.Err()))
				return
			}
			for _, rt := range routeChanges(routes, wr.Events) {
				if err := s.send(st, registry.WatchEvent{Type: registry.EventRoute, Routes: []registry.Route{rt}, Revision: rev}); err != nil {
					_ = st.Reset()
					return
				}
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

// Routes come from the services' rollout records (Rollout.Route): a
// watch of one service watches its record, a watch of all the prefix.
func routeKey(service string) string { return control.PrefixRollouts + service }

func routeWatchOpts(service string, rev int64) []clientv3.OpOption {
	opts := []clientv3.OpOption{clientv3.WithRev(rev)}
	if service == "" {
		opts = append(opts, clientv3.WithPrefix())
	}
	return opts
}

// readRoutes reads the routes in force at rev, by service.
func (s *Server) readRoutes(ctx context.Context, service string, rev int64) (map[string]registry.Route, error) {
	resp, err := s.member.Client().Get(ctx, routeKey(service), routeWatchOpts(service, rev)...)
	if err != nil {
		return nil, wire.Errorf(wire.CodeUnavailable, "read rollouts: %v", err)
	}
	routes := map[string]registry.Route{}
	for _, kv := range resp.Kvs {
		if rt, ok := routeOf(kv); ok && rt.Version != 0 {
			routes[rt.Service] = rt
		}
	}
	return routes, nil
}

// routeChanges applies rollout record events to routes (the routes in
// force, by service) and returns the routes that changed: most events
// are a rollout's progress, which leaves its route as it was.
func routeChanges(routes map[string]registry.Route, evs []*clientv3.Event) []registry.Route {
	var out []registry.Route
	for _, ev := range evs {
		rt, ok := routeOf(ev.Kv)
		if !ok {
			continue
		}
		if ev.Type == clientv3.EventTypeDelete {
			rt.Version = 0
		}
		if old, had := routes[rt.Service]; reflect.DeepEqual(old, rt) || (!had && rt.Version == 0) {
			continue
		}
		if rt.Version == 0 {
			delete(routes, rt.Service)
		} else {
			routes[rt.Service] = rt
		}
		out = append(out, rt)
	}
	return out
}

// routeOf is the route of a rollout record (the service named by the key
// for a deleted or unreadable one, with no route).
func routeOf(kv *mvccpb.KeyValue) (registry.Route, bool) {
	service := strings.TrimPrefix(string(kv.Key), control.PrefixRollouts)
	if registry.ValidateName(service) != nil {
		return registry.Route{}, false
	}
	var ro registry.Rollout
	if len(kv.Value) == 0 || json.Unmarshal(kv.Value, &ro) != nil || ro.Service != service {
		return registry.Route{Service: service}, true
	}
	return ro.Route(), true
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
