package callbacks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/backoff"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
	"github.com/physarum-p2p/physarum/registry-service/events"
)

// position is how far a callback, or the tail, has gone through the
// events: every event up to event n of revision index, or every event of
// index when n is whole.
type position struct {
	index int64
	n     int
}

const whole = math.MaxInt

func (p position) less(q position) bool {
	return p.index < q.index || (p.index == q.index && p.n < q.n)
}

// posOf is where an event (or a heartbeat, a resume point) stands.
func posOf(e registry.Event) position {
	if e.Type != registry.EventHeartbeat {
		if index, n, ok := registry.ParseEventID(e.ID); ok {
			return position{index, n}
		}
	}
	return position{e.Index, whole}
}

// request asks for the events after p.
func (p position) request() registry.EventsRequest {
	if p.n == whole {
		return registry.EventsRequest{Index: p.index, Follow: true}
	}
	return registry.EventsRequest{After: registry.EventID(p.index, p.n), Follow: true}
}

// stored reads the position a state's cursor says.
func stored(st control.CallbackState) position {
	if index, n, ok := registry.ParseEventID(st.LastID); ok && index == st.Cursor {
		return position{index, n}
	}
	return position{st.Cursor, whole}
}

// store sets a state's cursor to p.
func (p position) store(st *control.CallbackState) {
	st.Cursor, st.LastID = p.index, ""
	if p.n != whole {
		st.LastID = registry.EventID(p.index, p.n)
	}
}

// callbackDef is a callback's definition, ready to deliver.
type callbackDef struct {
	control.CallbackRecord
	key []byte // the secret's
}

func (d callbackDef) selects(e registry.Event) bool { return d.Callback().Selects(e) }

// sub is one callback while this worker leads.
type sub struct {
	def    callbackDef
	ctx    context.Context
	cancel context.CancelFunc
	more   chan struct{} // an event was queued
	room   chan struct{} // an event left the queue

	// Guarded by the leader's mu.
	queue []registry.Event
	// pos: every event up to it is queued, delivered, or not selected.
	pos position
	// joined: the tail feeds the queue; else a reader of its own does
	// (reading) or nothing does (stopped: disabled).
	joined, reading, stopped bool

	smu     sync.Mutex // serializes the state and its writes
	st      control.CallbackState
	at      position  // the cursor stored in etcd
	savedAt time.Time // when the state was last written
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// leader is one term of leadership.
type leader struct {
	w   *Worker
	cli *clientv3.Client
	// The election's key and revision: every write compares them, so
	// that a deposed leader's late write fails.
	key string
	rev int64

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	tail position // how far the tail has dispatched
	subs map[string]*sub
}

var (
	errDeleted = errors.New("callback deleted")
	errDeposed = errors.New("another registry-service leads the callbacks now")
	errJoined  = errors.New("caught up with the tail")
)

func newLeader(w *Worker, key string, rev int64) *leader {
	return &leader{w: w, cli: w.cli, key: key, rev: rev, subs: map[string]*sub{}}
}

// run delivers until ctx ends or leading fails.
func (l *leader) run(ctx context.Context) error {
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	defer func() {
		l.cancel(nil)
		l.wg.Wait()
	}()
	rev, err := l.load(l.ctx)
	if err != nil {
		return err
	}
	l.wg.Go(l.runTail)
	watch := l.cli.Watch(clientv3.WithRequireLeader(l.ctx), control.PrefixCallbacks, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	tick := time.NewTicker(l.w.cfg.Checkpoint)
	defer tick.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return context.Cause(l.ctx)
		case wr, ok := <-watch:
			if !ok || wr.Err() != nil {
				if l.ctx.Err() != nil {
					return context.Cause(l.ctx)
				}
				err := wr.Err()
				if err == nil {
					err = errors.New("the watch closed")
				}
				return fmt.Errorf("watch the callbacks: %w", err)
			}
			for _, ev := range wr.Events {
				l.change(ev)
			}
		case <-tick.C:
			l.checkpoint()
		}
	}
}

// load reads every callback and its state, and starts their deliveries;
// it returns the revision read.
func (l *leader) load(ctx context.Context) (int64, error) {
	resp, err := l.cli.Txn(ctx).Then(
		clientv3.OpGet(control.PrefixCallbacks, clientv3.WithPrefix()),
		clientv3.OpGet(control.PrefixCallbackState, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, fmt.Errorf("read the callbacks: %w", err)
	}
	states := map[string]control.CallbackState{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var st control.CallbackState
		if json.Unmarshal(kv.Value, &st) == nil {
			states[strings.TrimPrefix(string(kv.Key), control.PrefixCallbackState)] = st
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tail = position{resp.Header.Revision, whole}
	var subs []*sub
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		st := states[strings.TrimPrefix(string(kv.Key), control.PrefixCallbacks)]
		s := l.newSub(kv.Value, st.From(kv.CreateRevision))
		if s == nil {
			continue
		}
		subs = append(subs, s)
		if !s.stopped && s.pos.less(l.tail) {
			l.tail = s.pos // the tail starts from the smallest cursor
		}
	}
	for _, s := range subs {
		s.joined = !s.stopped
		l.start(s)
	}
	l.w.log.Info("callbacks: delivering", "callbacks", len(subs), "from_index", l.tail.index)
	return resp.Header.Revision, nil
}

// newSub makes a callback's sub from its definition and state (nil for a
// definition that cannot be read); l.mu is held.
func (l *leader) newSub(def []byte, st control.CallbackState) *sub {
	var d callbackDef
	if err := json.Unmarshal(def, &d.CallbackRecord); err != nil || d.ID == "" {
		l.w.log.Warn("callbacks: unreadable definition skipped", "err", err)
		return nil
	}
	key, err := registry.DecodeSecret(d.Secret)
	if err != nil {
		l.w.log.Warn("callbacks: definition with a bad secret skipped", "callback", d.ID, "err", err)
		return nil
	}
	d.key = key
	ctx, cancel := context.WithCancel(l.ctx)
	s := &sub{def: d, ctx: ctx, cancel: cancel, more: make(chan struct{}, 1), room: make(chan struct{}, 1),
		st: st, at: stored(st), savedAt: time.Now(), pos: stored(st), stopped: st.Disabled}
	l.subs[d.ID] = s
	return s
}

// start runs a sub's delivery, and its reader when it is behind the
// tail; l.mu is held.
func (l *leader) start(s *sub) {
	if s.stopped {
		return
	}
	if !s.joined {
		l.startReader(s)
	}
	l.w.metrics.setBacklog(s.def.ID, len(s.queue))
	l.wg.Go(func() { l.deliverLoop(s) })
}

// change follows a callback added or deleted.
func (l *leader) change(ev *clientv3.Event) {
	id := strings.TrimPrefix(string(ev.Kv.Key), control.PrefixCallbacks)
	var st control.CallbackState
	if ev.Type == clientv3.EventTypePut {
		// Written with the definition: read it as of then.
		resp, err := l.cli.Get(l.ctx, control.PrefixCallbackState+id, clientv3.WithRev(ev.Kv.ModRevision))
		if err == nil && len(resp.Kvs) == 1 {
			_ = json.Unmarshal(resp.Kvs[0].Value, &st)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.subs[id]
	if ev.Type == clientv3.EventTypeDelete {
		if old != nil {
			old.cancel()
			delete(l.subs, id)
			l.w.metrics.forget(id)
			l.w.log.Info("callbacks: callback deleted; its deliveries stop", "callback", id)
		}
		return
	}
	if old != nil {
		return // definitions are written once
	}
	s := l.newSub(ev.Kv.Value, st.From(ev.Kv.CreateRevision))
	if s == nil {
		return
	}
	// Behind the tail: its own reader brings it up to the tail first.
	s.joined = !s.stopped && !s.pos.less(l.tail)
	l.start(s)
	l.w.log.Info("callbacks: callback added", "callback", id, "url", s.def.URL, "from_index", s.pos.index, "joined", s.joined)
}

// runTail reads the events once for every joined callback, from the
// tail's position on, until the lead ends.
func (l *leader) runTail() {
	retry := backoff.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for l.ctx.Err() == nil {
		l.mu.Lock()
		from := l.tail
		l.mu.Unlock()
		err := events.Stream(l.ctx, l.cli, events.Request{EventsRequest: from.request(), Heartbeat: l.w.cfg.Checkpoint}, l.dispatch)
		if l.ctx.Err() != nil {
			return
		}
		if gone, ok := errors.AsType[*registry.GoneError](err); ok {
			l.tailGone(gone.Oldest)
			retry.Reset()
			continue
		}
		l.w.log.Warn("callbacks: event stream ended; reading again", "index", from.index, "err", err)
		select {
		case <-l.ctx.Done():
		case <-time.After(retry.Next()):
		}
	}
}

// dispatch hands one event of the tail to the joined callbacks that
// select it. A callback whose queue is full leaves the tail: its own
// reader takes over from its position.
func (l *leader) dispatch(e registry.Event) error {
	p := posOf(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.tail.less(p) {
		return nil // a heartbeat at the start, or read again
	}
	l.tail = p
	for _, s := range l.subs {
		if !s.joined || !s.pos.less(p) {
			continue
		}
		if e.Type != registry.EventHeartbeat && s.def.selects(e) {
			if len(s.queue) >= l.w.cfg.Queue {
				s.joined = false
				l.startReader(s)
				continue
			}
			s.queue = append(s.queue, e)
			signal(s.more)
			l.w.metrics.setBacklog(s.def.ID, len(s.queue))
		}
		s.pos = p
	}
	return nil
}

// tailGone moves the tail past a compaction: the joined callbacks whose
// position was compacted away skip to the oldest index kept, and say so.
func (l *leader) tailGone(oldest int64) {
	to := position{oldest, whole}
	var skipped []*sub
	var from []position
	l.mu.Lock()
	for _, s := range l.subs {
		if s.joined && s.pos.less(to) {
			skipped, from = append(skipped, s), append(from, s.pos)
			s.pos = to
		}
	}
	if l.tail.less(to) {
		l.tail = to
	}
	l.mu.Unlock()
	for i, s := range skipped {
		l.skip(s, from[i], oldest)
	}
}

// startReader starts a callback's own reader; l.mu is held.
func (l *leader) startReader(s *sub) {
	if s.reading || s.stopped {
		return
	}
	s.reading = true
	l.w.log.Debug("callbacks: a callback reads its own stream until it reaches the tail", "callback", s.def.ID, "from_index", s.pos.index, "tail", l.tail.index)
	l.wg.Go(func() { l.read(s) })
}

// read feeds a callback that is behind the tail from its own stream,
// from its position on, until it has caught up with the tail, then
// leaves it to the tail.
func (l *leader) read(s *sub) {
	retry := backoff.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	hb := min(time.Second, l.w.cfg.Checkpoint)
	for s.ctx.Err() == nil {
		l.mu.Lock()
		from := s.pos
		l.mu.Unlock()
		err := events.Stream(s.ctx, l.cli, events.Request{EventsRequest: from.request(), Heartbeat: hb},
			func(e registry.Event) error { return l.readOne(s, e) })
		if errors.Is(err, errJoined) || s.ctx.Err() != nil {
			return
		}
		if gone, ok := errors.AsType[*registry.GoneError](err); ok {
			to := position{gone.Oldest, whole}
			l.mu.Lock()
			if s.pos.less(to) {
				s.pos = to
			}
			l.mu.Unlock()
			l.skip(s, from, gone.Oldest)
			retry.Reset()
			continue
		}
		l.w.log.Warn("callbacks: a callback's event stream ended; reading again", "callback", s.def.ID, "index", from.index, "err", err)
		select {
		case <-s.ctx.Done():
		case <-time.After(retry.Next()):
		}
	}
}

// readOne queues an event of a callback's own reader (waiting for room),
// and ends the reader once the callback has reached the tail.
func (l *leader) readOne(s *sub, e registry.Event) error {
	p := posOf(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.pos.less(p) {
		if e.Type != registry.EventHeartbeat && s.def.selects(e) {
			for len(s.queue) >= l.w.cfg.Queue {
				l.mu.Unlock()
				select {
				case <-s.room:
				case <-s.ctx.Done():
				}
				l.mu.Lock()
				if s.ctx.Err() != nil {
					return s.ctx.Err()
				}
			}
			s.queue = append(s.queue, e)
			signal(s.more)
			l.w.metrics.setBacklog(s.def.ID, len(s.queue))
		}
		s.pos = p
	}
	if !s.pos.less(l.tail) {
		// Every event up to the tail is queued: the tail feeds the
		// rest (it skips what this reader already queued).
		s.joined, s.reading = true, false
		l.w.log.Debug("callbacks: a callback rejoins the tail", "callback", s.def.ID, "index", s.pos.index)
		return errJoined
	}
	return nil
}

// deliverLoop delivers a callback's queue in order, one event at a time,
// until the callback is deleted or disabled or the lead ends.
func (l *leader) deliverLoop(s *sub) {
	for {
		e, ok := l.head(s)
		if !ok || !l.deliver(s, e) {
			return
		}
		l.mu.Lock()
		s.queue = s.queue[1:]
		pending := len(s.queue)
		l.mu.Unlock()
		signal(s.room)
		l.w.metrics.setBacklog(s.def.ID, pending)
		now := l.w.cfg.Now().UTC()
		p := posOf(e)
		change := func(st *control.CallbackState) {
			if stored(*st).less(p) {
				p.store(st)
			}
			st.Delivered++
			st.Pending = pending
			st.LastSuccess, st.LastError, st.FailingSince, st.Attempts, st.LastAttempt = now, "", time.Time{}, 0, time.Time{}
		}
		var err error
		if pending > 0 && l.savedLately(s) {
			// Catching up: the cursor is stored at most every
			// cursorBatch (and when the queue empties). One etcd write
			// per delivery cost 0.5 ms of CPU each and slowed the API's
			// own writes 7x under 1,000 changes with 10 callbacks; a
			// new leader redelivers at most that much, which at least
			// once allows.
			l.apply(s, change)
		} else {
			err = l.save(s, change)
		}
		switch {
		case errors.Is(err, errDeleted), errors.Is(err, errDeposed):
			return
		case err != nil && s.ctx.Err() == nil:
			// Delivered, but the cursor is not stored: a new leader
			// delivers it again, which at least once allows.
			l.w.log.Warn("callbacks: could not store a cursor", "callback", s.def.ID, "index", p.index, "err", err)
		}
		if s.def.Instance != "" && e.Topic == registry.TopicLaunched && e.Type == registry.EventDeleted && e.Key == s.def.Instance {
			l.retire(s)
			return
		}
	}
}

// retire deletes the callback of a launched instance once the instance's
// deletion was delivered: Forget leaves it until then, so that the
// instance's last events reach it.
func (l *leader) retire(s *sub) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if _, err := l.w.cli.Txn(ctx).Then(
		clientv3.OpDelete(control.PrefixCallbacks+s.def.ID),
		clientv3.OpDelete(control.PrefixCallbackState+s.def.ID),
	).Commit(); err != nil {
		l.w.log.Warn("callbacks: could not delete a forgotten instance's callback", "callback", s.def.ID, "err", err)
		return
	}
	l.w.log.Info("callbacks: a forgotten instance's callback delivered its last event and is deleted", "callback", s.def.ID, "instance", s.def.Instance)
}

// head waits for the first event of a callback's queue.
func (l *leader) head(s *sub) (registry.Event, bool) {
	for {
		l.mu.Lock()
		if len(s.queue) > 0 {
			e := s.queue[0]
			l.mu.Unlock()
			return e, true
		}
		l.mu.Unlock()
		select {
		case <-s.more:
		case <-s.ctx.Done():
			return registry.Event{}, false
		}
	}
}

// deliver POSTs one event until its receiver answers 2xx (true), or the
// callback is disabled or deleted or the lead ends (false). Retries wait
// as the schedule says after the failures in a row so far, counted in
// the stored state, so that a new leader keeps the pace.
func (l *leader) deliver(s *sub, e registry.Event) bool {
	cfg := l.w.cfg
	for {
		s.smu.Lock()
		attempts, last := s.st.Attempts, s.st.LastAttempt
		s.smu.Unlock()
		if wait := Delay(cfg.Schedule, attempts, jitter()) - cfg.Now().Sub(last); attempts > 0 && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		}
		actx, cancel := context.WithTimeout(s.ctx, cfg.Timeout)
		err := post(actx, cfg.Client, s.def, e, cfg.Now())
		cancel()
		if s.ctx.Err() != nil {
			return false // abandoned, not failed
		}
		now := cfg.Now().UTC()
		if err == nil {
			l.w.metrics.delivered(true, now.Sub(e.Time))
			if attempts > 0 {
				l.w.log.Info("callbacks: delivered after failures", "callback", s.def.ID, "event", e.ID, "attempts", attempts+1)
			}
			return true
		}
		l.w.metrics.delivered(false, 0)
		l.mu.Lock()
		pending := len(s.queue)
		l.mu.Unlock()
		disabled := false
		serr := l.save(s, func(st *control.CallbackState) {
			st.Attempts++
			st.LastAttempt, st.LastError, st.Pending = now, fmt.Sprintf("event %s: %v", e.ID, err), pending
			if st.FailingSince.IsZero() {
				st.FailingSince = now
			}
			if now.Sub(st.FailingSince) >= cfg.DisableAfter {
				disabled = true
				st.Disabled = true
				st.DisabledReason = fmt.Sprintf("disabled at %s after failing since %s (%d attempts at event %s); last error: %v",
					now.Format(time.RFC3339), st.FailingSince.Format(time.RFC3339), st.Attempts, e.ID, err)
			}
		})
		if disabled {
			l.disable(s)
			return false
		}
		if errors.Is(serr, errDeleted) || errors.Is(serr, errDeposed) {
			return false
		}
		s.smu.Lock()
		n := s.st.Attempts
		s.smu.Unlock()
		if n == 1 {
			l.w.log.Warn("callbacks: delivery failed; retrying", "callback", s.def.ID, "url", s.def.URL, "event", e.ID, "err", err)
		} else {
			l.w.log.Debug("callbacks: delivery failed again", "callback", s.def.ID, "event", e.ID, "attempts", n, "err", err)
		}
	}
}

// disable stops a callback for good.
func (l *leader) disable(s *sub) {
	l.mu.Lock()
	s.stopped, s.joined, s.queue = true, false, nil
	l.mu.Unlock()
	s.cancel()
	l.w.metrics.setBacklog(s.def.ID, 0)
	l.w.metrics.disable()
	s.smu.Lock()
	reason := s.st.DisabledReason
	s.smu.Unlock()
	l.w.log.Warn("callbacks: callback disabled", "callback", s.def.ID, "url", s.def.URL, "reason", reason)
}

// skip records that a callback's events after from up to oldest were
// compacted away before delivery.
func (l *leader) skip(s *sub, from position, oldest int64) {
	l.w.metrics.compacted()
	now := l.w.cfg.Now().UTC()
	msg := fmt.Sprintf("events after index %d up to index %d were compacted away before delivery (noticed %s)", from.index, oldest, now.Format(time.RFC3339))
	l.w.log.Warn("callbacks: events skipped", "callback", s.def.ID, "after", from.index, "up_to", oldest)
	if err := l.save(s, func(st *control.CallbackState) { st.Skipped = msg }); err != nil && s.ctx.Err() == nil {
		l.w.log.Warn("callbacks: could not record skipped events", "callback", s.def.ID, "err", err)
	}
}

// Idle cursors are written when they lag the tail by cursorLag
// revisions, or every cursorEvery checkpoints, whichever comes first.
const (
	cursorLag   = 1000
	cursorEvery = 30
)

// checkpoint brings the stored cursors of idle callbacks up to their
// position, now and then (so that a new leader reads again little of
// what they did not select, and does not find their cursor compacted
// away), and every callback's stored pending count up to date.
func (l *leader) checkpoint() {
	type item struct {
		s       *sub
		pos     position
		pending int
	}
	var items []item
	l.mu.Lock()
	for _, s := range l.subs {
		if !s.stopped {
			items = append(items, item{s, s.pos, len(s.queue)})
		}
	}
	l.mu.Unlock()
	for _, it := range items {
		s := it.s
		s.smu.Lock()
		advance := it.pending == 0 && s.at.less(it.pos) &&
			(it.pos.index-s.at.index >= cursorLag || time.Since(s.savedAt) >= cursorEvery*l.w.cfg.Checkpoint)
		same := s.st.Pending == it.pending
		s.smu.Unlock()
		if !advance && same {
			continue
		}
		err := l.save(s, func(st *control.CallbackState) {
			if advance && stored(*st).less(it.pos) {
				it.pos.store(st)
			}
			st.Pending = it.pending
		})
		if errors.Is(err, errDeposed) {
			return
		}
	}
}

// cursorBatch is how often, at most, a callback catching up stores its
// cursor.
const cursorBatch = 250 * time.Millisecond

// savedLately reports whether s's state was stored within cursorBatch.
func (l *leader) savedLately(s *sub) bool {
	s.smu.Lock()
	defer s.smu.Unlock()
	return time.Since(s.savedAt) < cursorBatch
}

// apply changes a callback's state in memory only; the next save stores
// it.
func (l *leader) apply(s *sub, change func(*control.CallbackState)) {
	s.smu.Lock()
	defer s.smu.Unlock()
	change(&s.st)
}

// save changes a callback's state and writes it, if the callback still
// exists and this worker still leads.
func (l *leader) save(s *sub, change func(*control.CallbackState)) error {
	s.smu.Lock()
	defer s.smu.Unlock()
	change(&s.st)
	b, err := json.Marshal(s.st)
	if err != nil {
		return err
	}
	defKey := control.PrefixCallbacks + s.def.ID
	resp, err := l.cli.Txn(s.ctx).If(
		clientv3.Compare(clientv3.CreateRevision(defKey), ">", 0),
		clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev),
	).Then(clientv3.OpPut(control.PrefixCallbackState+s.def.ID, string(b))).
		Else(clientv3.OpGet(defKey, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count == 0 {
			s.cancel()
			return errDeleted
		}
		l.cancel(errDeposed)
		return errDeposed
	}
	s.at, s.savedAt = stored(s.st), time.Now()
	return nil
}
