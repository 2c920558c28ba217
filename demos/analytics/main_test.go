package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/demos/demoservice"
	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

func TestParseFlags(t *testing.T) {
	port := demotest.Env{"SERVICE_PORT": "8080"}
	demotest.CommonFlags(t, nil, parseFlags, func(c config) string { return c.listen })
	demotest.FlagCases(t, parseFlags, []demotest.FlagCase[config]{
		{Name: "default k", Env: port, Want: config{listen: "127.0.0.1:8080", k: defaultK}},
		{Name: "flags", Args: []string{"-listen", "127.0.0.1:0", "-k", "3"}, Want: config{listen: "127.0.0.1:0", k: 3}},
		{Name: "k zero", Args: []string{"-k", "0"}, Env: port, FlagErr: true},
		{Name: "k negative", Args: []string{"-k", "-1"}, Env: port, FlagErr: true},
		{Name: "k NaN", Args: []string{"-k", "NaN"}, Env: port, FlagErr: true},
		{Name: "k Inf", Args: []string{"-k", "Inf"}, Env: port, FlagErr: true},
		{Name: "k not a number", Args: []string{"-k", "x"}, Env: port, FlagErr: true},
	})
}

func TestHelp(t *testing.T) {
	demotest.Help(t, "analytics", parseFlags, "/analyze", "-k", "/healthz")
}

func TestServeStopsOnCancel(t *testing.T) {
	base, stop := demotest.Serve(t, demoservice.NewServer(newAnalytics(defaultK), slog.New(slog.DiscardHandler)))
	if code, body := post(t, base+"/analyze", `{"count":1,"mean":1,"min":1,"max":1,"stddev":0,"latest":1}`); code != 200 {
		t.Fatalf("POST /analyze: %d %s", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	demotest.RunBinary(t, "analytics", nil, func(base string) {
		if code, body := post(t, base+"/analyze", `{"count":10,"mean":28,"min":20,"max":100,"stddev":24,"latest":100}`); code != 200 || !strings.Contains(string(body), `"verdict":"anomaly"`) {
			t.Errorf("POST /analyze: %d %s", code, body)
		}
	})
}

func TestBinaryExitCodes(t *testing.T) {
	demotest.BinaryExitCodes(t, "analytics")
}
