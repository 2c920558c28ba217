package main

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/demos/demoservice"
	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

// parse is parseFlags on a host named box.
var parse = demotest.OnHost(parseFlags, "box")

func TestParseFlags(t *testing.T) {
	proxyPort := demotest.Env{"PROXY_PORT": "4201"}
	ports := proxyPort.With("SERVICE_PORT", "8080")
	def := config{listen: "127.0.0.1:8080", proxy: "http://127.0.0.1:4201", timeout: demoservice.DefaultTimeout, id: "box"}
	demotest.CommonFlags(t, proxyPort, parse, func(c config) string { return c.listen })
	demotest.FlagCases(t, parse, []demotest.FlagCase[config]{
		{Name: "environment", Env: ports, Want: def},
		{Name: "instance id", Env: ports.With("PHYSARUM_INSTANCE_ID", "i-3"),
			Want: config{def.listen, def.proxy, def.timeout, "i-3"}},
		{Name: "flags win", Args: []string{"-listen", "127.0.0.1:0", "-proxy", "http://127.0.0.1:9", "-timeout", "1s", "-id", "s9"},
			Want: config{"127.0.0.1:0", "http://127.0.0.1:9", time.Second, "s9"}},
		{Name: "no PROXY_PORT", Env: demotest.Env{"SERVICE_PORT": "8080"}, WantErr: "PROXY_PORT is not set"},
		{Name: "bad PROXY_PORT", Env: ports.With("PROXY_PORT", "99999"), WantErr: `PROXY_PORT="99999" is not a port number`},
		{Name: "bad -timeout", Args: []string{"-timeout", "-1s"}, Env: ports, FlagErr: true},
		{Name: "-timeout too long", Args: []string{"-timeout", "11m"}, Env: ports, FlagErr: true},
		{Name: "bad -proxy", Args: []string{"-proxy", "localhost:4201"}, Env: ports, FlagErr: true},
	})
}

func TestHelp(t *testing.T) {
	demotest.Help(t, "sensor", parse, "PROXY_PORT", "?value=", "-proxy", "-timeout", "-id")
}

func TestServeStopsOnCancel(t *testing.T) {
	s := newSensor("s1", demoservice.NewStage("http://127.0.0.1:1", "aggregator", "/ingest", time.Second))
	base, stop := demotest.Serve(t, demoservice.NewServer(s.handler(), slog.New(slog.DiscardHandler)))
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("GET /healthz: %d %s", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT and PROXY_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	demotest.RunBinary(t, "sensor", []string{"PROXY_PORT=1"}, func(base string) {
		// Nothing listens on port 1: the aggregator is unreachable.
		if code, body := get(t, base+"/reading"); code != http.StatusBadGateway || !strings.Contains(string(body), `"stage":"aggregator"`) {
			t.Errorf("GET /reading with no proxy: %d %s", code, body)
		}
	})
}

func TestBinaryExitCodes(t *testing.T) {
	demotest.BinaryExitCodes(t, "sensor", "PROXY_PORT=4201")
}
