package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/physarum-p2p/physarum/common/backoff"
	"github.com/physarum-p2p/physarum/common/wire"
)

// The event stream (SPEC.md section 12, "Events"): every change of the
// control plane's state as an Event, read from an index on, live or up
// to now. registry-service serves it over libp2p (EventsProtocol, which
// (*Client).Events reads) and over HTTP (GET /v1/events); both are one
// implementation, registry-service/events.

// EventsProtocol carries one EventsRequest, then EventsFrames until the
// stream ends (an error, an end frame, or either side going away).
const EventsProtocol protocol.ID = "/physarum/registry-events/1.0.0"

// EventsRequest asks for the events after an index.
type EventsRequest struct {
	// Index: deliver the events whose index is above it. 0 means from
	// now (the store's current revision).
	Index int64 `json:"index"`
	// After, an event's id ("<index>-<n>"), resumes right after that
	// event, within its revision if need be; it overrides Index.
	After string `json:"after,omitempty"`
	// Topics filter the events (Event.Matches; none: every event).
	Topics []string `json:"topics,omitempty"`
	// Follow keeps the stream open for the changes to come; without it
	// the stream ends once the revision current at its start is
	// delivered.
	Follow bool `json:"follow"`
}

// Validate checks the request's index, id and topics.
func (r EventsRequest) Validate() error {
	if r.Index < 0 {
		return invalid("index", "%d: want 0 (from now) or the index of the last event seen", r.Index)
	}
	if r.After != "" {
		if _, _, ok := ParseEventID(r.After); !ok {
			return invalid("after", "%.80q is not an event id (<index>-<n>)", r.After)
		}
	}
	for _, t := range r.Topics {
		if err := ValidateTopic(t); err != nil {
			return err
		}
	}
	return nil
}

// EventsFrame is one frame of an EventsProtocol stream: an event (or a
// heartbeat), or the stream's end, with an error when it failed.
type EventsFrame struct {
	Event *Event      `json:"event,omitempty"`
	Error *wire.Error `json:"error,omitempty"`
	// OldestIndex comes with a gone error: the oldest index still kept.
	OldestIndex int64 `json:"oldest_index,omitempty"`
	// End says the stream is complete (a request without Follow).
	End bool `json:"end,omitempty"`
}

// EventSource streams events: registry-service's control, and *Client
// over EventsProtocol. The HTTP API serves /v1/events when its
// Controller is one.
type EventSource interface {
	// Events calls fn with each event after req's index, in order, then
	// (with Follow) with the changes to come, until ctx ends, fn fails
	// (its error is returned) or the stream fails. The first call is a
	// heartbeat (Type EventHeartbeat) carrying the index the stream
	// starts after; while nothing happens, heartbeats follow, each with
	// an index up to which every event has been delivered (a resume
	// point). An index older than the store keeps is a *GoneError before
	// any call. Without Follow it returns nil once the revision current
	// at its start is delivered. fn is called from one goroutine at a
	// time.
	Events(ctx context.Context, req EventsRequest, fn func(Event) error) error
}

// GoneError is the answer to an index the store no longer keeps (etcd
// compacted it): the reader resyncs from the list operations and resumes
// from Oldest. It matches wire.CodeGone (errors.Is with
// &wire.Error{Code: wire.CodeGone}, wire.CodeOf).
type GoneError struct {
	// Index is the index asked for; Oldest the oldest still available.
	Index, Oldest int64
}

func (e *GoneError) Error() string { return e.wire().Error() }

// Unwrap is the *wire.Error the door sends.
func (e *GoneError) Unwrap() error { return e.wire() }

func (e *GoneError) wire() *wire.Error {
	return wire.Errorf(wire.CodeGone, "index %d is compacted away; the oldest index still available is %d: resync from the list operations, then resume from index %d",
		e.Index, e.Oldest, e.Oldest)
}

// ParseEventID reads an event's id, "<index>-<n>".
func ParseEventID(id string) (index int64, n int, ok bool) {
	i, c, found := strings.Cut(id, "-")
	if !found || !digits(i) || !digits(c) {
		return 0, 0, false
	}
	index, err := strconv.ParseInt(i, 10, 64)
	if err != nil || index < 1 {
		return 0, 0, false
	}
	n, err = strconv.Atoi(c)
	if err != nil {
		return 0, 0, false
	}
	return index, n, true
}

func digits(s string) bool {
	if s == "" || len(s) > 19 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// EventID formats an event's id.
func EventID(index int64, n int) string {
	return strconv.FormatInt(index, 10) + "-" + strconv.Itoa(n)
}

var _ EventSource = (*Client)(nil)

// maxEventsFrame bounds a frame of an event stream (an event carries a
// record: a service definition is a few KiB).
const maxEventsFrame = 16 << 20

// eventsPos is how far a stream has delivered: index, and within it the
// event numbered n (n < 0: every event up to index).
type eventsPos struct {
	set   bool
	index int64
	n     int
}

// request is the request that resumes right after pos.
func (p eventsPos) request(req EventsRequest) EventsRequest {
	if !p.set {
		return req
	}
	req.Index, req.After = p.index, ""
	if p.n >= 0 {
		req.After = EventID(p.index, p.n)
	}
	return req
}

func (p *eventsPos) take(e Event) {
	if e.Type == EventHeartbeat {
		if !p.set || e.Index >= p.index {
			*p = eventsPos{set: true, index: e.Index, n: -1}
		}
		return
	}
	if _, n, ok := ParseEventID(e.ID); ok {
		*p = eventsPos{set: true, index: e.Index, n: n}
	}
}

// fnFailed carries fn's error out of a stream, to be returned as it is.
type fnFailed struct{ err error }

func (e fnFailed) Error() string { return e.err.Error() }

// Events streams the control plane's events from a registry-service
// (EventSource; EventsProtocol). It fails over as other calls do: a
// registry that cannot serve the stream is left for the next, up to
// Options.Attempts in a row. A stream that breaks once it has delivered
// (a registry-service stopped, a connection lost) is opened again,
// on any registry, right after the last event or heartbeat fn was given:
// fn sees every event once, in order, as long as the store keeps the
// index (else a *GoneError). Refusals (a bad request, a gone index) are
// returned at once, fn's error unchanged.
func (c *Client) Events(ctx context.Context, req EventsRequest, fn func(Event) error) error {
	if err := req.Validate(); err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	var pos eventsPos
	retry := backoff.Backoff{Min: watchRetryMin, Max: watchRetryMax}
	var errs []error
	for attempt := 0; ; attempt++ {
		r := pos.request(req)
		progressed, err := c.eventsOnce(ctx, attempt, r, &pos, fn)
		if err == nil {
			return nil
		}
		if fe, ok := errors.AsType[fnFailed](err); ok {
			return fe.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ge, ok := errors.AsType[*GoneError](err); ok {
			return fmt.Errorf("read events: %w", ge)
		}
		if !retryable(err) {
			return fmt.Errorf("read events: %w", err)
		}
		if progressed {
			errs = nil
			retry.Reset()
		}
		errs = append(errs, err)
		if len(errs) >= c.opts.Attempts {
			if !progressed {
				c.reach.observe(err)
			}
			return fmt.Errorf("read events: %w: %w", ErrNoRegistry, errors.Join(errs...))
		}
		c.opts.Logger.Debug("event stream broke; opening it again", "index", r.Index, "after", r.After, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry.Next()):
		}
	}
}

// eventsOnce runs one stream from one registry (the attempt-th
// candidate) and reports whether it delivered anything.
func (c *Client) eventsOnce(ctx context.Context, attempt int, req EventsRequest, pos *eventsPos, fn func(Event) error) (progressed bool, err error) {
	find := c.opts.FindTimeout
	if c.reach.impatient() {
		find = min(find, unreachableWait)
	}
	wctx, cancel := context.WithTimeout(ctx, find)
	err = c.find.wait(wctx)
	cancel()
	if err != nil {
		return false, err
	}
	cands := c.find.candidates()
	p := cands[attempt%len(cands)]
	progressed, err = c.readEvents(ctx, p, req, pos, fn)
	if err != nil {
		var we *wire.Error
		if !errors.As(err, &we) && !errors.As(err, new(fnFailed)) {
			err = fmt.Errorf("%s: %w", p.ShortString(), err)
		}
	}
	return progressed, err
}

func (c *Client) readEvents(ctx context.Context, p peer.ID, req EventsRequest, pos *eventsPos, fn func(Event) error) (progressed bool, err error) {
	sctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	st, err := c.host.NewStream(sctx, p, EventsProtocol)
	cancel()
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	defer st.Reset()
	_ = st.SetWriteDeadline(time.Now().Add(c.opts.Timeout))
	if err := wire.WriteJSON(st, req, 0); err != nil {
		return false, err
	}
	// Our side stays open: the server takes our closing as goodbye. The
	// first frame comes once the stream is set up; then one at least
	// every WatchPingEvery.
	wait := c.opts.Timeout
	for {
		_ = st.SetReadDeadline(time.Now().Add(wait))
		var f EventsFrame
		if err := wire.ReadJSON(st, &f, maxEventsFrame); err != nil {
			if ctx.Err() != nil {
				return progressed, ctx.Err()
			}
			return progressed, err
		}
		wait = 3 * WatchPingEvery
		switch {
		case f.Error != nil:
			if f.Error.Code == wire.CodeGone {
				return progressed, &GoneError{Index: req.Index, Oldest: f.OldestIndex}
			}
			return progressed, f.Error
		case f.End:
			return progressed, nil
		case f.Event == nil:
			continue
		}
		if !progressed {
			progressed = true
			c.reach.observe(nil)
		}
		e := *f.Event
		if pos.set && e.Type != EventHeartbeat {
			if _, n, ok := ParseEventID(e.ID); ok && (e.Index < pos.index || e.Index == pos.index && (pos.n < 0 || n <= pos.n)) {
				continue // delivered before the stream broke
			}
		}
		pos.take(e)
		if err := fn(e); err != nil {
			return progressed, fnFailed{err}
		}
	}
}
