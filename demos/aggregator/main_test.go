package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/demos/demoservice"
	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

func TestParseFlags(t *testing.T) {
	proxyPort := demotest.Env{"PROXY_PORT": "4201"}
	ports := proxyPort.With("SERVICE_PORT", "8080")
	def := config{listen: "127.0.0.1:8080", proxy: "http://127.0.0.1:4201", timeout: demoservice.DefaultTimeout, window: defaultWindow}
	demotest.CommonFlags(t, proxyPort, parseFlags, func(c config) string { return c.listen })
	demotest.FlagCases(t, parseFlags, []demotest.FlagCase[config]{
		{Name: "environment", Env: ports, Want: def},
		{Name: "WINDOW", Env: ports.With("WINDOW", "3"), Want: config{def.listen, def.proxy, def.timeout, 3}},
		{Name: "flags win", Args: []string{"-listen", "127.0.0.1:0", "-proxy", "http://127.0.0.1:9/", "-timeout", "1s", "-window", "5"},
			Env:  ports.With("WINDOW", "3"),
			Want: config{"127.0.0.1:0", "http://127.0.0.1:9", time.Second, 5}},
		{Name: "-window wins over a bad WINDOW", Args: []string{"-window", "5"}, Env: ports.With("WINDOW", "x"),
			Want: config{def.listen, def.proxy, def.timeout, 5}},
		{Name: "no PROXY_PORT", Env: demotest.Env{"SERVICE_PORT": "8080"}, WantErr: "PROXY_PORT is not set"},
		{Name: "bad WINDOW", Env: ports.With("WINDOW", "0"), WantErr: `WINDOW="0" is not a whole number`},
		{Name: "bad -window", Args: []string{"-window", "0"}, Env: ports, FlagErr: true},
		{Name: "-window too large", Args: []string{"-window", "1000000000"}, Env: ports, FlagErr: true},
		{Name: "bad -timeout", Args: []string{"-timeout", "0s"}, Env: ports, FlagErr: true},
		{Name: "bad -proxy", Args: []string{"-proxy", "127.0.0.1:4201"}, Env: ports, FlagErr: true},
	})
}

func TestHelp(t *testing.T) {
	demotest.Help(t, "aggregator", parseFlags, "WINDOW", "/ingest", "/stats", "-proxy", "-timeout", "-window")
}

func TestServeStopsOnCancel(t *testing.T) {
	a := newAggregator(3, demoservice.NewStage("http://127.0.0.1:1", "analytics", "/analyze", time.Second))
	base, stop := demotest.Serve(t, demoservice.NewServer(a.handler(), slog.New(slog.DiscardHandler)))
	if code, body := demotest.Call(t, "GET", base+"/stats", ""); code != 200 {
		t.Fatalf("GET /stats: %d %s", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT and PROXY_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	demotest.RunBinary(t, "aggregator", []string{"PROXY_PORT=1", "WINDOW=4"}, func(base string) {
		if code, body := demotest.Call(t, "GET", base+"/stats", ""); code != 200 || strings.TrimSpace(string(body)) != `{"count":0,"window":4}` {
			t.Errorf("GET /stats: %d %s", code, body)
		}
	})
}

func TestBinaryExitCodes(t *testing.T) {
	demotest.BinaryExitCodes(t, "aggregator", "PROXY_PORT=4201")
}
