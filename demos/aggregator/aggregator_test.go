package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/demos/demoservice"
	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

// fakeAnalytics stands in for the proxy and analytics behind it: it
// records the summaries POSTed to /analytics/analyze and answers with
// answer, or {"count":<count>,"verdict":"normal"} when answer is nil.
func fakeAnalytics(answer func(w http.ResponseWriter, s summary)) *demotest.NextStage[summary] {
	if answer == nil {
		answer = func(w http.ResponseWriter, s summary) {
			demoservice.WriteJSON(w, http.StatusOK, map[string]any{"verdict": "normal", "count": s.Count})
		}
	}
	return &demotest.NextStage[summary]{Path: "/analytics/analyze", Answer: answer}
}

// startAggregator serves an aggregator with a window of size whose
// analytics is fake; it returns the aggregator's URL.
func startAggregator(t *testing.T, size int, fake http.Handler) string {
	t.Helper()
	proxy := httptest.NewServer(fake)
	t.Cleanup(proxy.Close)
	a := newAggregator(size, demoservice.NewStage(proxy.URL, "analytics", "/analyze", 5*time.Second))
	ts := httptest.NewServer(a.handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func ingest(t *testing.T, url string, v float64) ingestReply {
	t.Helper()
	code, body := demotest.Call(t, "POST", url+"/ingest", fmt.Sprintf(`{"sensor":"s1","seq":1,"timestamp":"2026-01-01T00:00:00Z","value":%g}`, v))
	if code != http.StatusOK {
		t.Fatalf("ingest %g: %d %s", v, code, body)
	}
	var r ingestReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("ingest %g: %v: %s", v, err, body)
	}
	return r
}

func TestWindowSlides(t *testing.T) {
	fake := fakeAnalytics(nil)
	url := startAggregator(t, 3, fake)

	if code, body := demotest.Call(t, "GET", url+"/stats", ""); code != 200 || strings.TrimSpace(string(body)) != `{"count":0,"window":3}` {
		t.Fatalf("stats before any reading: %d %s", code, body)
	}
	for _, v := range []float64{1, 2, 3} {
		ingest(t, url, v)
	}
	r := ingest(t, url, 7) // drops 1: the window is 2, 3, 7
	want := summary{Count: 3, Window: 3, Mean: 4, Min: 2, Max: 7, StdDev: 2.160246899469287, Latest: 7}
	if r.Summary != want {
		t.Errorf("summary %+v, want %+v", r.Summary, want)
	}
	if strings.TrimSpace(string(r.Analytics)) != `{"count":3,"verdict":"normal"}` {
		t.Errorf("analytics answer passed on as %s", r.Analytics)
	}
	got := fake.Got()
	if n := len(got); n != 4 || got[3] != want {
		t.Errorf("analytics got %d summaries, the last %+v", n, got[n-1])
	}
	if first := got[0]; first != (summary{Count: 1, Window: 3, Mean: 1, Min: 1, Max: 1, Latest: 1}) {
		t.Errorf("first summary %+v", first)
	}

	code, body := demotest.Call(t, "GET", url+"/stats", "")
	var stats summary
	if err := json.Unmarshal(body, &stats); code != 200 || err != nil || stats != want {
		t.Errorf("stats: %d %s, want %+v", code, body, want)
	}
	if code, body := demotest.Call(t, "GET", url+"/healthz", ""); code != 200 || string(body) != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
}

func TestBadReadings(t *testing.T) {
	url := startAggregator(t, 10, fakeAnalytics(nil))
	tests := []struct {
		body   string
		substr string
	}{
		{"", "empty body"},
		{`{"sensor":"s1"}`, `no "value"`},
		{`{"value":null}`, `no "value"`},
		{`{"value":"20"}`, "malformed JSON"},
		{`{"value":1e999}`, "malformed JSON"},
		{`[1,2]`, "malformed JSON"},
		{`{"value":1`, "malformed JSON"},
		{`{"value":1}{"value":2}`, "more than one JSON value"},
		{`{"sensor":"` + strings.Repeat("x", maxReading) + `","value":1}`, "larger than"},
	}
	for _, tt := range tests {
		code, body := demotest.Call(t, "POST", url+"/ingest", tt.body)
		var e demoservice.ErrorReply
		if err := json.Unmarshal(body, &e); code != 400 || err != nil || !strings.Contains(e.Error, tt.substr) {
			t.Errorf("ingest %.40q: %d %s, want 400 saying %q", tt.body, code, body, tt.substr)
		}
	}
	if code, body := demotest.Call(t, "GET", url+"/stats", ""); strings.TrimSpace(string(body)) != `{"count":0,"window":10}` {
		t.Errorf("bad readings entered the window: %d %s", code, body)
	}
	if code, _ := demotest.Call(t, "GET", url+"/ingest", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /ingest: %d, want 405", code)
	}
}

func TestAnalyticsFails(t *testing.T) {
	fake := fakeAnalytics(func(w http.ResponseWriter, _ summary) {
		demoservice.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "model not loaded"})
	})
	url := startAggregator(t, 10, fake)
	code, body := demotest.Call(t, "POST", url+"/ingest", `{"value":1}`)
	var e demoservice.ErrorReply
	if err := json.Unmarshal(body, &e); code != http.StatusBadGateway || err != nil ||
		e.Stage != "analytics" || e.Status != 500 || !strings.Contains(e.Error, "analytics answered 500: model not loaded") {
		t.Fatalf("ingest with analytics failing: %d %s", code, body)
	}
	// The reading stays in the window.
	if _, body := demotest.Call(t, "GET", url+"/stats", ""); !strings.Contains(string(body), `"count":1`) {
		t.Errorf("stats after a failed analysis: %s", body)
	}
}

func TestAnalyticsDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	a := newAggregator(10, demoservice.NewStage(down.URL, "analytics", "/analyze", 5*time.Second))
	ts := httptest.NewServer(a.handler())
	defer ts.Close()
	code, body := demotest.Call(t, "POST", ts.URL+"/ingest", `{"value":1}`)
	var e demoservice.ErrorReply
	if err := json.Unmarshal(body, &e); code != http.StatusBadGateway || err != nil ||
		e.Stage != "analytics" || e.Status != 0 || !strings.Contains(e.Error, "analytics is unreachable") {
		t.Fatalf("ingest with analytics down: %d %s", code, body)
	}
}

// TestConcurrentIngest runs ingests in parallel (for -race) and checks
// that the window kept exactly its size.
func TestConcurrentIngest(t *testing.T) {
	url := startAggregator(t, 10, fakeAnalytics(nil))
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			code, body := demotest.Call(t, "POST", url+"/ingest", fmt.Sprintf(`{"value":%d}`, i))
			if code != 200 {
				t.Errorf("ingest %d: %d %s", i, code, body)
			}
		})
	}
	wg.Wait()
	_, body := demotest.Call(t, "GET", url+"/stats", "")
	var s summary
	if err := json.Unmarshal(body, &s); err != nil || s.Count != 10 || s.Min < 0 || s.Max > 39 {
		t.Errorf("stats after 40 readings: %s", body)
	}
}
