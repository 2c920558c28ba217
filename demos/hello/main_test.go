package main

import (
	"io"
	"log/slog"
	"testing"

	"github.com/physarum-p2p/physarum/demos/demoservice"
	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

// parse is parseFlags on a host named box.
var parse = demotest.OnHost(parseFlags, "box")

func TestParseFlags(t *testing.T) {
	demotest.CommonFlags(t, nil, parse, func(c config) string { return c.listen })
	demotest.FlagCases(t, parse, []demotest.FlagCase[config]{
		{Name: "host name", Env: demotest.Env{"SERVICE_PORT": "8080"},
			Want: config{listen: "127.0.0.1:8080", instance: "box"}},
		{Name: "instance id", Env: demotest.Env{"SERVICE_PORT": "1", "PHYSARUM_INSTANCE_ID": "i-7"},
			Want: config{listen: "127.0.0.1:1", instance: "i-7"}},
	})
	noHost := func() (string, error) { return "", io.ErrUnexpectedEOF }
	if cfg, err := parseFlags(nil, demotest.Env{"SERVICE_PORT": "1"}.Getenv, noHost, io.Discard); err != nil || cfg.instance != "unknown" {
		t.Errorf("without a host name: config %+v, %v; want instance unknown", cfg, err)
	}
}

func TestHelp(t *testing.T) {
	demotest.Help(t, "hello", parse, "/echo", "/stream", "/sleep", "/ws", "RFC 6455", "PHYSARUM_INSTANCE_ID")
}

// TestServeShutsDownGracefully starts a stream that would run for a minute,
// stops the server, and checks that the stream ends and Serve returns nil.
func TestServeShutsDownGracefully(t *testing.T) {
	h := newHello("test-1")
	srv := demoservice.NewServer(h, slog.New(slog.DiscardHandler))
	srv.RegisterOnShutdown(h.shutdown)
	base, stop := demotest.Serve(t, srv)

	br := startLongStream(t, base)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after shutdown the stream went on with %q, %v", rest, err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	demotest.RunBinary(t, "hello", []string{"PHYSARUM_INSTANCE_ID=bin-1"}, func(base string) {
		resp, body := do(t, "GET", base+"/", nil, nil)
		wantStatus(t, resp, body, 200)
		if string(body) != "hello from bin-1\n" {
			t.Errorf("GET / = %q", body)
		}
	})
}

func TestBinaryExitCodes(t *testing.T) {
	demotest.BinaryExitCodes(t, "hello")
}
