package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/demos/demoservice"
	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

// fakeProxy stands in for the local Physarum proxy: it routes
// /<service>/<rest> to <rest> on the service's address, and answers as the
// proxy does when it cannot (a JSON error marked with demoservice.ProxyErrorHeader).
type fakeProxy struct {
	mu     sync.Mutex
	routes map[string]http.Handler
}

func (p *fakeProxy) route(service string, h http.Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[service] = h
}

// routeTo routes service to the HTTP server at addr.
func (p *fakeProxy) routeTo(service, addr string) {
	p.route(service, &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", addr
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			proxyError(w, http.StatusBadGateway, "unavailable", fmt.Sprintf("no reachable instance of %s: %v", service, err))
		},
	})
}

func proxyError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set(demoservice.ProxyErrorHeader, code)
	demoservice.WriteJSON(w, status, map[string]string{"code": code, "message": msg})
}

func (p *fakeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	service, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	p.mu.Lock()
	h := p.routes[service]
	p.mu.Unlock()
	if h == nil {
		proxyError(w, http.StatusNotFound, "not_found", "unknown service "+service)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = "/"+rest, ""
	h.ServeHTTP(w, r2)
}

// startStage runs the built binary of a pipeline stage behind the fake
// proxy at proxyPort.
func startStage(t *testing.T, name, proxyPort string, env ...string) (*proctest.Proc, string) {
	t.Helper()
	return demotest.StartBinary(t, name, append(env, "PROXY_PORT="+proxyPort)...)
}

// chainReply is what the sensor answers when the whole chain works.
type chainReply struct {
	Reading    reading `json:"reading"`
	Aggregator struct {
		Summary struct {
			Count  int     `json:"count"`
			Mean   float64 `json:"mean"`
			Latest float64 `json:"latest"`
		} `json:"summary"`
		Analytics struct {
			Verdict string `json:"verdict"`
		} `json:"analytics"`
	} `json:"aggregator"`
}

// TestChain runs the pipeline: this package's sensor handler, and the
// aggregator and analytics binaries, all calling each other through a fake
// proxy, as they would through their real ones. It then takes the stages
// down one by one and checks that the sensor names the one that failed.
func TestChain(t *testing.T) {
	proctest.Build(t, "./demos/aggregator", "./demos/analytics") // one go build for both
	fp := &fakeProxy{routes: map[string]http.Handler{}}
	proxy := httptest.NewServer(fp)
	defer proxy.Close()
	proxyPort := proxy.URL[strings.LastIndexByte(proxy.URL, ':')+1:]

	analytics, analyticsAddr := startStage(t, "analytics", proxyPort)
	fp.routeTo("analytics", analyticsAddr)
	aggregator, aggregatorAddr := startStage(t, "aggregator", proxyPort, "WINDOW=10")
	fp.routeTo("aggregator", aggregatorAddr)
	s := newSensor("s1", demoservice.NewStage(proxy.URL, "aggregator", "/ingest", 5*time.Second))
	fp.route("sensor", s.handler())
	sensorURL := proxy.URL + "/sensor"

	read := func(query string) chainReply {
		t.Helper()
		code, body := get(t, sensorURL+"/reading"+query)
		var r chainReply
		if err := json.Unmarshal(body, &r); code != 200 || err != nil {
			t.Fatalf("GET /reading%s: %d %s", query, code, body)
		}
		return r
	}
	for i := 1; i <= 9; i++ {
		r := read("?value=20")
		if r.Aggregator.Summary.Count != i || r.Aggregator.Analytics.Verdict != "normal" {
			t.Fatalf("reading %d: %+v", i, r)
		}
	}
	r := read("?value=100")
	if r.Reading.Value != 100 || r.Reading.Seq != 10 || r.Aggregator.Summary.Count != 10 ||
		r.Aggregator.Summary.Mean != 28 || r.Aggregator.Analytics.Verdict != "anomaly" {
		t.Fatalf("the spike: %+v", r)
	}
	if r := read(""); r.Reading.Seq != 11 || r.Reading.Value != synthetic(11) || r.Aggregator.Summary.Count != 10 {
		t.Fatalf("a synthetic reading: %+v", r)
	}
	if code, body := get(t, proxy.URL+"/aggregator/stats"); code != 200 || !strings.Contains(string(body), `"count":10`) {
		t.Fatalf("GET /aggregator/stats: %d %s", code, body)
	}

	wantFailure := func(stage, substr string) {
		t.Helper()
		code, body := get(t, sensorURL+"/reading")
		var e demoservice.ErrorReply
		if err := json.Unmarshal(body, &e); code != http.StatusBadGateway || err != nil || e.Stage != stage || !strings.Contains(e.Error, substr) {
			t.Fatalf("GET /reading with %s down: %d %s", stage, code, body)
		}
	}
	if code := analytics.Stop(demotest.Timeout); code != 0 {
		t.Fatalf("analytics exited %d after SIGTERM", code)
	}
	wantFailure("analytics", "aggregator answered 502: the proxy, on the way to analytics, answered 502")
	if code := aggregator.Stop(demotest.Timeout); code != 0 {
		t.Fatalf("aggregator exited %d after SIGTERM", code)
	}
	wantFailure("aggregator", "the proxy, on the way to aggregator, answered 502: no reachable instance of aggregator")
}
