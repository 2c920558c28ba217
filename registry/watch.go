package registry

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/backoff"
	"github.com/physarum-p2p/physarum/common/wire"
)

// InstanceWatch holds the live set of one service's instance records (or
// all services'), kept current by a watch stream to a registry-service.
// When the stream breaks it reconnects, to another registry if need be,
// and starts again from a fresh snapshot.
type InstanceWatch struct {
	c       *Client
	service string
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	insts   map[string]Instance
	routes  map[string]Route // by service; none: every version serves
	synced  bool
	changed chan struct{} // closed and replaced on every change
}

// WatchInstances starts watching service's instances ("" for all). It
// returns at once; Wait blocks until the first snapshot has arrived.
func (c *Client) WatchInstances(service string) *InstanceWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &InstanceWatch{
		c: c, service: service, cancel: cancel, done: make(chan struct{}),
		insts: map[string]Instance{}, routes: map[string]Route{}, changed: make(chan struct{}),
	}
	go func() {
		defer close(w.done)
		w.loop(ctx)
	}()
	return w
}

// Close stops the watch and waits for its goroutine.
func (w *InstanceWatch) Close() {
	w.cancel()
	<-w.done
}

// Instances returns the current records, sorted by ID.
func (w *InstanceWatch) Instances() []Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Instance, 0, len(w.insts))
	for _, in := range w.insts {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Route returns the watched service's route: which versions serve, and
// what on-demand instances start from. It is the last one the registry
// sent, kept while no registry answers.
func (w *InstanceWatch) Route() Route { return w.RouteOf(w.service) }

// RouteOf returns the route of service, as Route does (for a watch of
// every service).
func (w *InstanceWatch) RouteOf(service string) Route {
	w.mu.Lock()
	defer w.mu.Unlock()
	if rt, ok := w.routes[service]; ok {
		return rt
	}
	return Route{Service: service}
}

// Changed returns a channel that is closed at the next change (of the
// instances or of a route).
func (w *InstanceWatch) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// Wait blocks until the first snapshot has arrived or ctx ends.
func (w *InstanceWatch) Wait(ctx context.Context) error {
	for {
		w.mu.Lock()
		synced, ch := w.synced, w.changed
		w.mu.Unlock()
		if synced {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("watch instances of %q: %w", w.service, ctx.Err())
		}
	}
}

func (w *InstanceWatch) notify() {
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *InstanceWatch) loop(ctx context.Context) {
	redial(ctx, func(attempt int) {
		wctx, cancel := context.WithTimeout(ctx, w.c.opts.FindTimeout)
		err := w.c.find.wait(wctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				w.c.reach.observe(err)
			}
			return
		}
		cands := w.c.find.candidates()
		p := cands[attempt%len(cands)]
		synced, err := w.stream(ctx, p)
		if ctx.Err() == nil {
			// The set of instances stays as it was: it is replaced only
			// by the next snapshot, once a registry answers again. A
			// watch that was up says nothing of reachability: the next
			// attempt, at once, does.
			if !synced {
				w.c.reach.observe(err)
			}
			w.c.opts.Logger.Debug("instance watch broke; reconnecting", "registry", p, "err", err)
		}
	})
}

// Pacing of the watch's reconnections: a broken watch is opened again
// after a delay that doubles from watchRetryMin up to watchRetryMax, and
// starts over from watchRetryMin once a watch has stayed up for
// watchHealthy (it answered two pings), so that one break after hours of
// service is mended at once.
const (
	watchRetryMin = 50 * time.Millisecond
	watchRetryMax = 2 * time.Second
	watchHealthy  = 2 * WatchPingEvery
)

// redial calls watch (attempt counts the calls from 0) until ctx ends,
// waiting between calls with a backoff that a call lasting watchHealthy
// or longer resets.
func redial(ctx context.Context, watch func(attempt int)) {
	retry := backoff.Backoff{Min: watchRetryMin, Max: watchRetryMax}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		began := time.Now()
		watch(attempt)
		if time.Since(began) >= watchHealthy {
			retry.Reset()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry.Next()):
		}
	}
}

// stream runs one watch stream until it fails, and reports whether it
// got as far as a snapshot.
func (w *InstanceWatch) stream(ctx context.Context, p peer.ID) (synced bool, err error) {
	sctx, cancel := context.WithTimeout(ctx, w.c.opts.Timeout)
	st, err := w.c.host.NewStream(sctx, p, WatchProtocol)
	cancel()
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	defer st.Reset()
	_ = st.SetWriteDeadline(time.Now().Add(w.c.opts.Timeout))
	if err := wire.WriteJSON(st, WatchRequest{Kind: WatchKindInstances, Service: w.service}, 0); err != nil {
		return false, err
	}
	// Our side stays open: the server takes our closing as goodbye.
	for {
		_ = st.SetReadDeadline(time.Now().Add(3 * WatchPingEvery))
		var ev WatchEvent
		if err := wire.ReadJSON(st, &ev, 16<<20); err != nil {
			return synced, err
		}
		if ev.Error != nil {
			return synced, ev.Error
		}
		w.apply(ev)
		synced = synced || ev.Type == EventSnapshot
	}
}

func (w *InstanceWatch) apply(ev WatchEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev.Type {
	case EventSnapshot:
		w.c.reach.observe(nil)
		w.insts = make(map[string]Instance, len(ev.Instances))
		for _, in := range ev.Instances {
			w.insts[in.ID] = in
		}
		w.routes = map[string]Route{}
		w.setRoutes(ev.Routes)
		w.synced = true
	case EventRoute:
		w.setRoutes(ev.Routes)
	case EventPut:
		for _, in := range ev.Instances {
			w.insts[in.ID] = in
		}
	case EventDelete:
		delete(w.insts, ev.ID)
	default:
		return // ping
	}
	w.notify()
}

func (w *InstanceWatch) setRoutes(routes []Route) {
	for _, rt := range routes {
		if w.service != "" && rt.Service != w.service {
			continue
		}
		if rt.Version == 0 {
			delete(w.routes, rt.Service)
		} else {
			w.routes[rt.Service] = rt
		}
	}
}
