package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// FuzzEventsQuery feeds arbitrary query strings and Last-Event-ID
// headers to /v1/events: never a panic; either a 400 JSON error that
// never reached the source, or a stream whose request is valid (index 0
// or more, at most maxTopics valid topics, an event id that parses) and
// decodes again to itself. Its seed corpus is under
// testdata/fuzz/FuzzEventsQuery.
func FuzzEventsQuery(f *testing.F) {
	f.Fuzz(func(t *testing.T, rawQuery, lastID string) {
		req, err := decodeEvents(parseQuery(rawQuery), lastID)
		if err == nil {
			if verr := req.Validate(); verr != nil {
				t.Fatalf("%q %q: decoded %+v, which is invalid: %v", rawQuery, lastID, req, verr)
			}
			if len(req.Topics) > maxTopics {
				t.Fatalf("%q: %d topics", rawQuery, len(req.Topics))
			}
			again, err := decodeEvents(encodeEvents(req), "")
			if err != nil || again.Index != req.Index || again.Follow != req.Follow || strings.Join(again.Topics, ",") != strings.Join(req.Topics, ",") {
				t.Fatalf("%+v encoded and decoded again: %+v, %v", req, again, err)
			}
		}

		fe := &fakeEvents{fakeControl: newFake(), stream: canned(nil)}
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:7001/v1/events", nil)
		r.URL.RawQuery = rawQuery
		r.RemoteAddr = "127.0.0.1:40000"
		if lastID != "" {
			r.Header["Last-Event-Id"] = []string{lastID}
		}
		w := httptest.NewRecorder()
		New(fe, Options{}).ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			if err != nil {
				t.Fatalf("%q %q: 200, but decoding refuses it: %v", rawQuery, lastID, err)
			}
			if got := fe.requests(); len(got) != 1 {
				t.Fatalf("%q: streamed without a request", rawQuery)
			}
		case http.StatusBadRequest:
			var e wire.Error
			if jerr := json.Unmarshal(w.Body.Bytes(), &e); jerr != nil || e.Code != wire.CodeBadRequest || e.Message == "" {
				t.Fatalf("%q %q: 400 with %s", rawQuery, lastID, w.Body)
			}
			if len(fe.requests()) != 0 {
				t.Fatalf("%q %q: refused, but the source was asked", rawQuery, lastID)
			}
		default:
			t.Fatalf("%q %q: status %d: %s", rawQuery, lastID, w.Code, w.Body)
		}
	})
}

// parseQuery parses a query as net/http does for a request (ignoring
// the pairs it cannot parse).
func parseQuery(raw string) url.Values {
	v, _ := url.ParseQuery(raw)
	return v
}

// encodeEvents is a request as a /v1/events query.
func encodeEvents(r registry.EventsRequest) url.Values {
	v := url.Values{}
	v.Set("index", strconv.FormatInt(r.Index, 10))
	if !r.Follow {
		v.Set("follow", "false")
	}
	for _, t := range r.Topics {
		v.Add("topic", t)
	}
	return v
}
