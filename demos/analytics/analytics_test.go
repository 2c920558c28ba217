package main

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

func ptr[T any](v T) *T { return &v }

// window summarizes values as the aggregator does.
func window(values ...float64) summary {
	var sum, sq float64
	lo, hi := values[0], values[0]
	for _, v := range values {
		sum += v
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	mean := sum / float64(len(values))
	for _, v := range values {
		sq += (v - mean) * (v - mean)
	}
	return summary{Count: ptr(len(values)), Mean: ptr(mean), Min: ptr(lo), Max: ptr(hi),
		StdDev: ptr(math.Sqrt(sq / float64(len(values)))), Latest: ptr(values[len(values)-1])}
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name string
		s    summary
		want string
	}{
		{"one reading", window(5), verdictNormal},
		{"constant", window(20, 20, 20, 20), verdictNormal},
		{"spike in a full window", window(20, 20, 20, 20, 20, 20, 20, 20, 20, 100), verdictAnomaly},
		{"dip in a full window", window(20, 21, 20, 21, 20, 21, 20, 21, 20, -50), verdictAnomaly},
		{"spike too early to tell", window(20, 20, 100), verdictNormal},
		{"spike in the past", window(20, 20, 20, 20, 20, 20, 20, 20, 100, 20), verdictNormal},
		{"ramp", window(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), verdictNormal},
	}
	for _, tt := range tests {
		v, err := judge(tt.s, defaultK)
		if err != nil || v.Verdict != tt.want {
			t.Errorf("%s: %+v, %v; want %s", tt.name, v, err, tt.want)
		}
	}
	// The sensor's sine wave, over every window of 10, is never an anomaly.
	var values []float64
	for seq := 1; seq <= 200; seq++ {
		values = append(values, 20+5*math.Sin(2*math.Pi*float64(seq%60)/60))
		if len(values) > 10 {
			values = values[1:]
		}
		if v, err := judge(window(values...), defaultK); err != nil || v.Verdict != verdictNormal {
			t.Fatalf("sine reading %d: %+v, %v", seq, v, err)
		}
	}
}

func TestJudgeNumbers(t *testing.T) {
	v, err := judge(window(20, 20, 20, 20, 20, 20, 20, 20, 20, 100), 2.5)
	if err != nil {
		t.Fatal(err)
	}
	want := verdict{Verdict: verdictAnomaly, Count: 10, Latest: 100, Mean: 28, StdDev: 24, Deviation: 72, K: 2.5, Threshold: 60}
	if v != want {
		t.Errorf("verdict %+v, want %+v", v, want)
	}
	if v, _ := judge(window(20, 20, 20, 20, 20, 20, 20, 20, 20, 100), 3.5); v.Verdict != verdictNormal {
		t.Errorf("with k 3.5 a 3-sigma spike is %s", v.Verdict)
	}
}

// post sends POST url with body and returns the status and body.
func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	return demotest.Call(t, "POST", url, body)
}

func TestAnalyze(t *testing.T) {
	ts := httptest.NewServer(newAnalytics(defaultK))
	defer ts.Close()
	code, body := post(t, ts.URL+"/analyze", `{"count":10,"window":10,"mean":28,"min":20,"max":100,"stddev":24,"latest":100}`)
	var v verdict
	if err := json.Unmarshal(body, &v); code != 200 || err != nil || v.Verdict != verdictAnomaly || v.Threshold != 60 {
		t.Fatalf("analyze: %d %s", code, body)
	}
	code, body = post(t, ts.URL+"/analyze", `{"count":10,"mean":20,"min":19,"max":21,"stddev":0.5,"latest":20.5}`)
	if err := json.Unmarshal(body, &v); code != 200 || err != nil || v.Verdict != verdictNormal {
		t.Fatalf("analyze: %d %s", code, body)
	}
}

func TestAnalyzeBadSummaries(t *testing.T) {
	ts := httptest.NewServer(newAnalytics(defaultK))
	defer ts.Close()
	tests := []struct {
		body   string
		field  string
		substr string
	}{
		{``, "", "empty body"},
		{`{"count":1`, "", "malformed JSON"},
		{`{"count":"1"}`, "", "malformed JSON"},
		{`[]`, "", "malformed JSON"},
		{`{} {}`, "", "more than one JSON value"},
		{`{"pad":"` + strings.Repeat("x", maxSummary) + `"}`, "", "larger than"},
		{`{}`, "count", "missing"},
		{`{"count":1,"mean":1,"min":1,"max":1,"stddev":0}`, "latest", "missing"},
		{`{"count":0,"mean":1,"min":1,"max":1,"stddev":0,"latest":1}`, "count", "want at least 1"},
		{`{"count":2,"mean":1,"min":2,"max":1,"stddev":0,"latest":1}`, "min", "above max"},
		{`{"count":2,"mean":1,"min":1,"max":2,"stddev":-1,"latest":1}`, "stddev", "negative"},
		{`{"count":2,"mean":1,"min":1,"max":2,"stddev":0.5,"latest":3}`, "latest", "outside"},
	}
	for _, tt := range tests {
		code, body := post(t, ts.URL+"/analyze", tt.body)
		var e errorReply
		if err := json.Unmarshal(body, &e); code != 400 || err != nil || e.Field != tt.field || !strings.Contains(e.Error, tt.substr) {
			t.Errorf("analyze %.50q: %d %s, want 400 naming field %q and saying %q", tt.body, code, body, tt.field, tt.substr)
		}
	}
}

func TestOtherRoutes(t *testing.T) {
	ts := httptest.NewServer(newAnalytics(defaultK))
	defer ts.Close()
	if code, body := demotest.Call(t, "GET", ts.URL+"/healthz", ""); code != 200 || string(body) != "ok\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
	if code, _ := demotest.Call(t, "GET", ts.URL+"/analyze", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /analyze: %d, want 405", code)
	}
}
