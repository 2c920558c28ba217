package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/demos/demoservice"
	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

func listenOf(c demoservice.Config) string { return c.Listen }

func TestParseFlags(t *testing.T) {
	demotest.CommonFlags(t, nil, command.Parse, listenOf)
}

func TestHelp(t *testing.T) {
	demotest.Help(t, "calculator", command.Parse, "/add?a=1&b=2", "/div?a=1&b=4", "/healthz")
}

func TestServeStopsOnCancel(t *testing.T) {
	base, stop := demotest.Serve(t, demoservice.NewServer(newCalculator(), slog.New(slog.DiscardHandler)))
	if code, body := demotest.Call(t, "GET", base+"/add?a=1&b=1", ""); code != 200 || strings.TrimSpace(string(body)) != `{"result":2}` {
		t.Fatalf("GET /add: %d %s", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	demotest.RunBinary(t, "calculator", nil, func(base string) {
		if code, body := demotest.Call(t, "GET", base+"/mul?a=6&b=7", ""); code != 200 || strings.TrimSpace(string(body)) != `{"result":42}` {
			t.Errorf("GET /mul: %d %s", code, body)
		}
	})
}

func TestBinaryExitCodes(t *testing.T) {
	demotest.BinaryExitCodes(t, "calculator")
}
