package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// The event stream (SPEC.md section 12, "Events"): GET /v1/events
// streams the control plane's changes, one JSON object per line (NDJSON)
// or as server-sent events when the Accept header asks for
// text/event-stream. It is served when the Controller is also a
// registry.EventSource (registry-service's control) and this is not an
// allocator's connector.
//
//	GET /v1/events?index=N&topic=instance:hello&topic=node[&follow=false]
//
// index (default 0, from now) resumes after that index; topic (repeated,
// or comma-separated) filters; follow=false ends the answer once the
// events up to the store's current index are sent. A Last-Event-ID
// header (an event's id, or a heartbeat's index) resumes where a
// server-sent-event reader left off, and takes precedence over index.
// An index the store has compacted away is 410 {"code": "gone",
// "message", "oldest_index"}.

// routeEvents is the event stream's route key.
const routeEvents = "/v1/events"

// Event stream limits.
const (
	// maxTopics bounds the topic filters of one stream.
	maxTopics = 64
	// streamWriteTimeout bounds one write of a stream: a reader that
	// takes no data for that long is cut off.
	streamWriteTimeout = 30 * time.Second
)

// eventsQuery lists the query parameters of /v1/events.
const eventsQuery = "index, topic and follow"

// streamed is the value of a handler that wrote its own answer (a
// stream): ServeHTTP writes nothing more.
type streamed struct{}

// goneAnswer is the 410 of a compacted index.
type goneAnswer struct {
	Code        string `json:"code"`
	Message     string `json:"message"`
	OldestIndex int64  `json:"oldest_index"`
}

// addEventRoutes adds /v1/events when h's Controller is an event source;
// an allocator's connector answers it 404, saying where events are.
func (h *handler) addEventRoutes() {
	if h.o.NodeScope != "" {
		h.routes[routeEvents] = map[string]handlerFunc{http.MethodGet: func(*request) (int, any, error) {
			return 0, nil, wire.Errorf(wire.CodeNotFound, "an allocator's connector has no event stream: read /v1/events from registry-service (its -api-listen)")
		}}
		return
	}
	if src, ok := h.c.(registry.EventSource); ok {
		h.routes[routeEvents] = map[string]handlerFunc{http.MethodGet: func(q *request) (int, any, error) {
			return h.events(src, q)
		}}
	}
}

// decodeEvents reads /v1/events' query, and a Last-Event-ID header
// (lastID, "" when absent): an event's id resumes after that event, a
// bare index after that index.
func decodeEvents(query url.Values, lastID string) (registry.EventsRequest, error) {
	req := registry.EventsRequest{Follow: true}
	for k, vs := range query {
		switch k {
		case "index":
			if len(vs) != 1 {
				return req, errorf("invalid index: given %d times: give it once", len(vs))
			}
			n, err := parseIndex(vs[0])
			if err != nil {
				return req, err
			}
			req.Index = n
		case "topic":
			for _, v := range vs {
				for t := range strings.SplitSeq(v, ",") {
					if t = strings.TrimSpace(t); t == "" {
						continue
					}
					if err := registry.ValidateTopic(t); err != nil {
						return req, err
					}
					if len(req.Topics) == maxTopics {
						return req, errorf("invalid topic: more than %d topics", maxTopics)
					}
					req.Topics = append(req.Topics, t)
				}
			}
		case "follow":
			if len(vs) != 1 {
				return req, errorf("invalid follow: given %d times: give it once", len(vs))
			}
			b, err := strconv.ParseBool(vs[0])
			if err != nil {
				return req, errorf("invalid follow: %s: want true or false", quote(vs[0]))
			}
			req.Follow = b
		default:
			return req, errorf("unknown query parameter %s: /v1/events takes %s", quote(k), eventsQuery)
		}
	}
	if lastID = strings.TrimSpace(lastID); lastID != "" {
		if _, _, ok := registry.ParseEventID(lastID); ok {
			req.After = lastID
		} else {
			n, err := parseIndex(lastID)
			if err != nil {
				return req, errorf("invalid Last-Event-ID: %s: want an event's id (<index>-<n>) or an index", quote(lastID))
			}
			req.Index = n
		}
	}
	return req, nil
}

// parseIndex reads an index: a whole number, 0 or more.
func parseIndex(s string) (int64, error) {
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errorf("invalid index: %s: want a whole number, 0 (from now) or the index of the last event seen", quote(s))
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errorf("invalid index: %s: want a whole number, 0 (from now) or the index of the last event seen", quote(s))
	}
	return n, nil
}

// wantsSSE reports whether an Accept header asks for server-sent events.
func wantsSSE(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
			return true
		}
	}
	return false
}

// events streams to q's writer. Errors before the stream starts are the
// API's answers (a gone index is 410 with the oldest index); once it has
// started, a failure is the stream's last line and the answer ends.
func (h *handler) events(src registry.EventSource, q *request) (int, any, error) {
	req, err := decodeEvents(q.query, q.r.Header.Get("Last-Event-ID"))
	if err != nil {
		return 0, nil, err
	}
	sw := &streamWriter{w: q.w, rc: http.NewResponseController(q.w), sse: wantsSSE(q.r.Header.Get("Accept"))}
	if q.r.Method == http.MethodHead {
		sw.head()
		q.w.WriteHeader(http.StatusOK)
		return 0, streamed{}, nil
	}
	// The stream outlives RequestTimeout: it runs until the reader goes,
	// or its server shuts down (which would otherwise wait for it).
	ctx, cancel := context.WithCancel(registry.WithCaller(q.r.Context(), registry.CallerOf(q.ctx)))
	defer cancel()
	stop := context.AfterFunc(h.shut.of(q.r), cancel)
	defer stop()
	err = src.Events(ctx, req, sw.send)
	switch {
	case !sw.started && err != nil:
		if ge, ok := errors.AsType[*registry.GoneError](err); ok {
			e := toWire(err)
			h.log.Debug("http request refused", "method", q.r.Method, "path", q.r.URL.Path, "status", http.StatusGone, "remote", q.r.RemoteAddr, "err", err)
			h.write(q.w, http.StatusGone, goneAnswer{Code: e.Code, Message: e.Message, OldestIndex: ge.Oldest})
			return 0, streamed{}, nil
		}
		return 0, nil, err
	case err != nil && ctx.Err() == nil && !sw.broken:
		h.log.Debug("event stream ended", "remote", q.r.RemoteAddr, "err", err)
		sw.fail(err)
	}
	return 0, streamed{}, nil
}

// shutdowns are contexts that end when their server shuts down, one per
// server (http.Server.RegisterOnShutdown), so that a graceful shutdown
// ends the streams, which it would otherwise wait for.
type shutdowns struct {
	mu sync.Mutex
	m  map[*http.Server]context.Context
}

// of returns the context of the server r came in on (one that never
// ends when r says of no server).
func (s *shutdowns) of(r *http.Request) context.Context {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok {
		return context.Background()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.m[srv]; ok {
		return c
	}
	if s.m == nil {
		s.m = map[*http.Server]context.Context{}
	}
	c, cancel := context.WithCancel(context.Background())
	srv.RegisterOnShutdown(cancel)
	s.m[srv] = c
	return c
}

// streamWriter writes a stream's events as NDJSON or server-sent events,
// flushing each.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	sse     bool
	started bool
	broken  bool // a write failed: the reader has gone
	buf     bytes.Buffer
}

// heartbeatLine is a heartbeat as the stream writes it.
type heartbeatLine struct {
	Type  string    `json:"type"`
	Index int64     `json:"index"`
	Time  time.Time `json:"time"`
}

// errorLine ends a stream that failed once started.
type errorLine struct {
	Type        string `json:"type"`
	Code        string `json:"code"`
	Message     string `json:"message"`
	OldestIndex int64  `json:"oldest_index,omitempty"`
}

func (sw *streamWriter) head() {
	hd := sw.w.Header()
	if sw.sse {
		hd.Set("Content-Type", "text/event-stream")
	} else {
		hd.Set("Content-Type", "application/x-ndjson")
	}
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Accel-Buffering", "no") // a proxy in front must not hold lines back
}

// send writes one event or heartbeat (the first call starts the answer).
func (sw *streamWriter) send(e registry.Event) error {
	if !sw.started {
		sw.started = true
		sw.head()
		// The server's timeouts are for requests, not streams: no read
		// deadline (a read timing out would cancel the request), and a
		// write deadline per write instead of one for the whole answer.
		_ = sw.rc.SetReadDeadline(time.Time{})
		_ = sw.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		sw.w.WriteHeader(http.StatusOK)
	}
	var v any = e
	id := e.ID
	if e.Type == registry.EventHeartbeat {
		v, id = heartbeatLine{Type: registry.EventHeartbeat, Index: e.Index, Time: e.Time}, strconv.FormatInt(e.Index, 10)
	}
	return sw.line(id, e.Type == registry.EventHeartbeat, v)
}

// fail ends a started stream with an error line.
func (sw *streamWriter) fail(err error) {
	e := toWire(err)
	l := errorLine{Type: "error", Code: e.Code, Message: e.Message}
	if ge, ok := errors.AsType[*registry.GoneError](err); ok {
		l.OldestIndex = ge.Oldest
	}
	_ = sw.line("", false, l)
}

// line writes v as a JSON line, or as a server-sent event (with id; a
// heartbeat as an event of type heartbeat, which a browser's onmessage
// does not see but whose id still moves Last-Event-ID on), and flushes.
func (sw *streamWriter) line(id string, heartbeat bool, v any) error {
	sw.buf.Reset()
	if sw.sse {
		if heartbeat {
			sw.buf.WriteString("event: heartbeat\n")
		}
		if id != "" {
			sw.buf.WriteString("id: " + id + "\n")
		}
		sw.buf.WriteString("data: ")
	}
	enc := json.NewEncoder(&sw.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if sw.sse {
		sw.buf.WriteString("\n") // Encode ended the data line; a blank line ends the event
	}
	_ = sw.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := sw.w.Write(sw.buf.Bytes()); err != nil {
		sw.broken = true
		return err
	}
	if err := sw.rc.Flush(); err != nil {
		sw.broken = true
		return err
	}
	return nil
}
