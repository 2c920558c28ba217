package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/demos/demoservice"
	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

// fakeAggregator stands in for the proxy and the aggregator behind it: it
// records the readings POSTed to /aggregator/ingest and answers with
// answer, or {"ok":"yes"} when answer is nil.
func fakeAggregator(answer func(w http.ResponseWriter)) *demotest.NextStage[reading] {
	return &demotest.NextStage[reading]{Path: "/aggregator/ingest", Answer: func(w http.ResponseWriter, _ reading) {
		if answer == nil {
			demoservice.WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
			return
		}
		answer(w)
	}}
}

var testTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// startSensor serves a sensor whose next stage is fake, with a fixed clock;
// it returns the sensor's URL.
func startSensor(t *testing.T, fake http.Handler) string {
	t.Helper()
	proxy := httptest.NewServer(fake)
	t.Cleanup(proxy.Close)
	s := newSensor("s1", demoservice.NewStage(proxy.URL, "aggregator", "/ingest", 5*time.Second))
	s.now = func() time.Time { return testTime }
	ts := httptest.NewServer(s.handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// get sends GET url and returns the status and body.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	return demotest.Call(t, "GET", url, "")
}

func TestReading(t *testing.T) {
	fake := fakeAggregator(nil)
	url := startSensor(t, fake)

	code, body := get(t, url+"/reading")
	want := `{"reading":{"sensor":"s1","seq":1,"timestamp":"2026-01-02T03:04:05Z","value":20.523},"aggregator":{"ok":"yes"}}`
	if code != 200 || strings.TrimSpace(string(body)) != want {
		t.Fatalf("GET /reading: %d %s\nwant %s", code, body, want)
	}
	code, body = get(t, url+"/reading?value=-7.5")
	var r struct {
		Reading reading `json:"reading"`
	}
	if err := json.Unmarshal(body, &r); code != 200 || err != nil || r.Reading.Value != -7.5 || r.Reading.Seq != 2 {
		t.Fatalf("GET /reading?value=-7.5: %d %s", code, body)
	}
	if got := fake.Got(); len(got) != 2 || got[0].Value != 20.523 || got[1].Value != -7.5 {
		t.Errorf("the aggregator got %+v", got)
	}
	if code, body := get(t, url+"/healthz"); code != 200 || string(body) != "ok\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
}

func TestSynthetic(t *testing.T) {
	for seq, want := range map[uint64]float64{0: 20, 15: 25, 30: 20, 45: 15, 60: 20, 61: 20.523} {
		if got := synthetic(seq); got != want {
			t.Errorf("synthetic(%d) = %g, want %g", seq, got, want)
		}
	}
}

func TestReadingBadValue(t *testing.T) {
	fake := fakeAggregator(nil)
	url := startSensor(t, fake)
	for _, v := range []string{"", "x", "NaN", "Inf", "1e999"} {
		code, body := get(t, url+"/reading?value="+v)
		var e demoservice.ErrorReply
		if err := json.Unmarshal(body, &e); code != 400 || err != nil || !strings.Contains(e.Error, "parameter value") {
			t.Errorf("GET /reading?value=%s: %d %s, want 400 naming the parameter", v, code, body)
		}
	}
	if got := fake.Got(); len(got) != 0 {
		t.Errorf("bad requests sent %d readings", len(got))
	}
}

func TestReadingChainFails(t *testing.T) {
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter)
		stage  string
		status int
		substr string
	}{
		{"aggregator fails", func(w http.ResponseWriter) {
			demoservice.WriteJSON(w, 500, demoservice.ErrorReply{Error: "disk full"})
		}, "aggregator", 500, "aggregator answered 500: disk full"},
		{"analytics fails behind it", func(w http.ResponseWriter) {
			demoservice.WriteJSON(w, 502, demoservice.ErrorReply{Error: "analytics is unreachable: connection refused", Stage: "analytics"})
		}, "analytics", 502, "aggregator answered 502: analytics is unreachable"},
		{"no aggregator instance", func(w http.ResponseWriter) {
			w.Header().Set(demoservice.ProxyErrorHeader, "unavailable")
			demoservice.WriteJSON(w, 502, map[string]string{"code": "unavailable", "message": "no reachable instance"})
		}, "aggregator", 502, "the proxy, on the way to aggregator, answered 502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := startSensor(t, fakeAggregator(tt.answer))
			code, body := get(t, url+"/reading")
			var e demoservice.ErrorReply
			if err := json.Unmarshal(body, &e); code != http.StatusBadGateway || err != nil ||
				e.Stage != tt.stage || e.Status != tt.status || !strings.Contains(e.Error, tt.substr) {
				t.Fatalf("GET /reading: %d %s; want 502 naming %s (%d) and saying %q", code, body, tt.stage, tt.status, tt.substr)
			}
		})
	}
}
