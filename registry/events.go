package registry

import (
	"context"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/protocol"

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
