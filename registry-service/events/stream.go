package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/physarum-p2p/physarum/common/backoff"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// DefaultHeartbeat is how long a following stream stays quiet before it
// sends a heartbeat, when the request does not say.
const DefaultHeartbeat = 10 * time.Second

// Request is what a reader asks for: registry.EventsRequest (index or
// event id, topics, follow) and how often to hear a heartbeat.
type Request struct {
	registry.EventsRequest
	// Heartbeat is how long a following stream stays quiet before it
	// sends a heartbeat (default DefaultHeartbeat).
	Heartbeat time.Duration
}

// Config configures a Streamer. The zero value is usable.
type Config struct {
	// Registerer receives the stream's metrics (nil: none).
	Registerer prometheus.Registerer
	// Logger receives a line when a watch ends and is opened again
	// (default: discard).
	Logger *slog.Logger
	// Now is the clock of events' Time (default time.Now).
	Now func() time.Time
	// GiveUp bounds how long a broken watch is opened again before the
	// stream fails as unavailable, so that the reader goes to another
	// registry (default 30s).
	GiveUp time.Duration
}

// Streamer serves event streams from one etcd client. Safe for
// concurrent use; each Stream runs on its caller's goroutine.
type Streamer struct {
	cli     *clientv3.Client
	cfg     Config
	m       *metrics
	readers atomic.Int64 // numbers each stream's gRPC stream
	// cut, when above 0, ends every watch after that many responses of
	// events, as a lost leader would (tests, export_test.go).
	cut atomic.Int64
}

// New returns a Streamer reading cli. cli should honour
// clientv3.WithRequireLeader (a client of the cluster's endpoints, not
// etcd's in-process one), so that a member cut off from its cluster ends
// its readers' watches instead of leaving them silent. Close it to
// remove its metrics.
func New(cli *clientv3.Client, cfg Config) *Streamer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GiveUp <= 0 {
		cfg.GiveUp = 30 * time.Second
	}
	return &Streamer{cli: cli, cfg: cfg, m: newMetrics(cfg.Registerer)}
}

// Close removes the Streamer's metrics from their registry.
func (s *Streamer) Close() { s.m.unregister() }

// Stream is New(cli, Config{}).Stream(ctx, req, fn), without metrics.
func Stream(ctx context.Context, cli *clientv3.Client, req Request, fn func(registry.Event) error) error {
	return New(cli, Config{}).Stream(ctx, req, fn)
}

// cursor is how far a stream has delivered: the events of revisions
// below rev, and those of revision rev numbered below next (every one,
// when next is math.MaxInt).
type cursor struct {
	rev  int64
	next int
}

func (c cursor) complete() bool { return c.next == math.MaxInt }

// index is the last index every event of which has been delivered.
func (c cursor) index() int64 {
	if c.complete() {
		return c.rev
	}
	return c.rev - 1
}

// delivered reports whether event n of revision rev was delivered.
func (c cursor) delivered(rev int64, n int) bool {
	return rev < c.rev || (rev == c.rev && n < c.next)
}

// watchFrom is the revision a watch starts from: the cursor's own, read
// again and skipped, so that etcd calls the watch compacted exactly when
// an event after the cursor may be gone (a compaction at revision C
// keeps revision C's puts, not its deletions).
func (c cursor) watchFrom() int64 {
	if c.complete() {
		return c.rev
	}
	return max(c.rev-1, 1)
}

// Stream calls fn with every event after req's index (or after the event
// req.After names) that passes req's topics, in index order, each once,
// and with heartbeats, as registry.EventSource says: first a heartbeat
// carrying the index the stream starts after, once the start has been
// checked (a compacted start is a *registry.GoneError and a bad request
// a *wire.Error before any call); then, while following, a heartbeat
// whenever nothing was delivered for req.Heartbeat, whose index every
// event up to has been delivered. Without Follow it returns nil once
// the revision current at its start has been delivered. A watch that
// ends (the member lost its leader, a connection broke) is opened again
// from the last revision delivered, for up to Config.GiveUp, then the
// stream fails as unavailable; a compaction overtaking it is a
// *registry.GoneError. It returns ctx's error when ctx ends, and fn's
// error unchanged.
func (s *Streamer) Stream(ctx context.Context, req Request, fn func(registry.Event) error) error {
	if err := req.Validate(); err != nil {
		return wire.Errorf(wire.CodeBadRequest, "%v", err)
	}
	if req.Heartbeat <= 0 {
		req.Heartbeat = DefaultHeartbeat
	}
	s.m.reading(1)
	defer s.m.reading(-1)

	resp, err := s.cli.Get(ctx, Prefix)
	if err != nil {
		return unavailable("read the store's revision", err)
	}
	head := resp.Header.Revision
	cur := cursor{rev: req.Index, next: math.MaxInt}
	switch {
	case req.After != "":
		index, n, _ := registry.ParseEventID(req.After)
		cur = cursor{rev: index, next: n + 1}
	case req.Index == 0:
		cur.rev = head
	}
	if cur.index() > head {
		return wire.Errorf(wire.CodeBadRequest, "index %d is ahead of the store (its index is %d): an index from another registry cluster?", cur.index(), head)
	}
	if err := s.checkCompacted(ctx, cur); err != nil {
		return err
	}
	if err := fn(s.heartbeat(cur)); err != nil {
		return err
	}
	if !req.Follow && cur.complete() && cur.rev >= head {
		return nil
	}
	st := &stream{s: s, req: req, fn: fn, head: head, cur: cur, id: strconv.FormatInt(s.readers.Add(1), 10)}
	return st.run(ctx)
}

// checkCompacted answers a start the store no longer keeps with a
// *registry.GoneError naming the oldest index it keeps, learnt from a
// watch (a read at a compacted revision does not say).
func (s *Streamer) checkCompacted(ctx context.Context, cur cursor) error {
	from := cur.watchFrom()
	_, err := s.cli.Get(ctx, Prefix, clientv3.WithRev(from))
	if err == nil {
		return nil
	}
	if !errors.Is(err, rpctypes.ErrCompacted) {
		return unavailable("read the store at the start index", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for wr := range s.cli.Watch(wctx, Prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if wr.CompactRevision != 0 {
			return s.gone(cur, wr.CompactRevision)
		}
		if wr.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return unavailable("learn the oldest index kept", err)
}

func (s *Streamer) gone(cur cursor, oldest int64) error {
	s.m.goneInc()
	return &registry.GoneError{Index: cur.index(), Oldest: oldest}
}

func (s *Streamer) heartbeat(cur cursor) registry.Event {
	return registry.Event{Index: cur.index(), Time: s.cfg.Now(), Type: registry.EventHeartbeat}
}

// stream is one reader's state across the etcd watches it opens.
type stream struct {
	s    *Streamer
	req  Request
	fn   func(registry.Event) error
	head int64 // the revision current at the start
	cur  cursor
	id   string // names the reader's own gRPC watch stream
}

// errWatchEnded is a watch that ended without the stream failing.
var errWatchEnded = errors.New("watch ended")

func (st *stream) run(ctx context.Context) error {
	retry := backoff.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	var broken time.Time // when the watches started failing; zero while one works
	for {
		healthy, err := st.watch(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, errWatchEnded) {
			return err // nil (complete), gone, or fn's error
		}
		if healthy {
			broken = time.Time{}
			retry.Reset()
		}
		if broken.IsZero() {
			broken = time.Now()
		}
		if time.Since(broken) > st.s.cfg.GiveUp {
			return unavailable("watch the store", err)
		}
		st.s.m.restart()
		st.s.cfg.Logger.Debug("event watch ended; opening it again", "index", st.cur.index(), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry.Next()):
		}
	}
}

// watch runs one etcd watch from the cursor on. It reports whether the
// watch was established; an error wrapping errWatchEnded means it ended
// and may be opened again.
func (st *stream) watch(ctx context.Context) (healthy bool, err error) {
	// Each reader has its own gRPC watch stream (keyed by its metadata):
	// etcd answers a progress request only when every watcher of the
	// stream has caught up, which one slow reader must not hold back.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wctx = metadata.AppendToOutgoingContext(wctx, "physarum-events-reader", st.id)
	wch := st.s.cli.Watch(wctx, Prefix, clientv3.WithPrefix(), clientv3.WithPrevKV(),
		clientv3.WithRev(st.cur.watchFrom()), clientv3.WithCreatedNotify())

	// While following, the timer runs from the last delivery; when it
	// fires a progress request asks etcd how far the watch has come, and
	// the heartbeat goes out with etcd's answer, or after a grace
	// period without one (a watch still catching up gets none). Without
	// Follow it paces progress requests, whose answer tells that the
	// start's revision has been passed.
	quiet, grace := st.req.Heartbeat, min(st.req.Heartbeat/2, time.Second)
	if !st.req.Follow {
		quiet = 200 * time.Millisecond
	}
	timer := time.NewTimer(quiet)
	defer timer.Stop()
	due := false // a heartbeat waits for a progress answer
	responses := int64(0)
	reset := func(d time.Duration) {
		timer.Stop()
		timer.Reset(d)
	}
	beat := func() error {
		due = false
		reset(quiet)
		return st.fn(st.s.heartbeat(st.cur))
	}
	for {
		select {
		case <-ctx.Done():
			return healthy, ctx.Err()
		case <-timer.C:
			if !st.req.Follow {
				_ = st.s.cli.RequestProgress(wctx)
				reset(quiet)
				continue
			}
			if due {
				if err := beat(); err != nil {
					return healthy, err
				}
				continue
			}
			due = true
			_ = st.s.cli.RequestProgress(wctx)
			reset(grace)
		case wr, ok := <-wch:
			if !ok {
				return healthy, fmt.Errorf("%w: its channel closed", errWatchEnded)
			}
			if wr.CompactRevision != 0 {
				return healthy, st.s.gone(st.cur, wr.CompactRevision)
			}
			if err := wr.Err(); err != nil {
				return healthy, fmt.Errorf("%w: %w", errWatchEnded, err)
			}
			if wr.Created {
				healthy = true
				if !st.req.Follow {
					_ = st.s.cli.RequestProgress(wctx)
				}
				continue
			}
			if wr.IsProgressNotify() {
				// Every event up to the header's revision has been sent.
				if rev := wr.Header.Revision; rev > st.cur.rev || (rev == st.cur.rev && !st.cur.complete()) {
					st.cur = cursor{rev: rev, next: math.MaxInt}
				}
				if due {
					if err := beat(); err != nil {
						return healthy, err
					}
				}
			} else {
				delivered, err := st.deliver(wr.Events)
				if err != nil {
					return healthy, err
				}
				if responses++; responses == st.s.cut.Load() {
					return healthy, fmt.Errorf("%w: cut after %d responses", errWatchEnded, responses)
				}
				if delivered {
					due = false
					if st.req.Follow {
						reset(quiet)
					}
				}
			}
			if !st.req.Follow && st.cur.complete() && st.cur.rev >= st.head {
				return healthy, nil
			}
		}
	}
}

// deliver passes one watch response's events to fn, those the cursor
// has not passed and the topics let through; without Follow, only up
// to the start's revision. Every revision in the response is then
// complete (etcd never splits one between responses).
func (st *stream) deliver(evs []*clientv3.Event) (delivered bool, err error) {
	if len(evs) == 0 {
		return false, nil
	}
	for _, e := range FromWatch(evs, st.s.cfg.Now()) {
		if !st.req.Follow && e.Index > st.head {
			break
		}
		_, n, _ := registry.ParseEventID(e.ID)
		if st.cur.delivered(e.Index, n) {
			continue
		}
		st.cur = cursor{rev: e.Index, next: n + 1}
		if !e.Matches(st.req.Topics) {
			continue
		}
		if err := st.fn(e); err != nil {
			return delivered, err
		}
		st.s.m.emitted(e.Topic)
		delivered = true
	}
	last := evs[len(evs)-1].Kv.ModRevision
	if !st.req.Follow {
		last = min(last, st.head)
	}
	if last >= st.cur.rev {
		st.cur = cursor{rev: last, next: math.MaxInt}
	}
	return delivered, nil
}

func unavailable(what string, err error) error {
	return wire.Errorf(wire.CodeUnavailable, "%s: %v", what, err)
}
