package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/demos/demoservice"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string // in the error; "" for none
		flagErr bool   // a command-line error (exit 2)
	}{
		{name: "service port", env: map[string]string{"SERVICE_PORT": "8080"}, want: config{listen: "127.0.0.1:8080"}},
		{name: "listen wins", args: []string{"-listen", "127.0.0.1:0"}, env: map[string]string{"SERVICE_PORT": "8080"},
			want: config{listen: "127.0.0.1:0"}},
		{name: "no SERVICE_PORT", wantErr: "SERVICE_PORT is not set"},
		{name: "SERVICE_PORT not a number", env: map[string]string{"SERVICE_PORT": "x"}, wantErr: `SERVICE_PORT="x" is not a port number`},
		{name: "SERVICE_PORT too big", env: map[string]string{"SERVICE_PORT": "65536"}, wantErr: "not a port number"},
		{name: "bad listen", args: []string{"-listen", "nowhere"}, flagErr: true},
		{name: "extra argument", args: []string{"x"}, env: map[string]string{"SERVICE_PORT": "1"}, flagErr: true},
		{name: "unknown flag", args: []string{"-port", "1"}, flagErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			got, err := parseFlags(tt.args, envOf(tt.env), &stderr)
			switch {
			case tt.flagErr:
				if !errors.Is(err, errFlags) || stderr.Len() == 0 {
					t.Fatalf("err %v, stderr %q; want errFlags, reported", err, stderr.String())
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err %v, want one line holding %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case got != tt.want:
				t.Fatalf("config %+v, want %+v", got, tt.want)
			}
		})
	}
	var stderr strings.Builder
	if _, err := parseFlags([]string{"-help"}, envOf(nil), &stderr); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(stderr.String(), "/div?a=1&b=4") || !strings.Contains(stderr.String(), "SERVICE_PORT") {
		t.Errorf("-help: %v\n%s", err, stderr.String())
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	done := make(chan error, 1)
	go func() { done <- demoservice.Serve(ctx, demoservice.NewServer(newCalculator(), logger), ln, logger) }()
	if code, body := get(t, "http://"+ln.Addr().String()+"/add?a=1&b=1"); code != 200 || strings.TrimSpace(string(body)) != `{"result":2}` {
		t.Fatalf("GET /add: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	bin := proctest.Build(t, "./demos/calculator")
	port := strconv.Itoa(freeport.T(t))
	p := proctest.Start(t, "calculator", bin, nil, []string{"SERVICE_PORT=" + port})
	base := "http://127.0.0.1:" + port
	p.WaitHTTP(base+"/healthz", 15*time.Second)
	if code, body := get(t, base+"/mul?a=6&b=7"); code != 200 || strings.TrimSpace(string(body)) != `{"result":42}` {
		t.Errorf("GET /mul: %d %s", code, body)
	}
	if code := p.Stop(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p.Stderr())
	}
	if log := p.Stderr(); !strings.Contains(log, "msg=listening") || !strings.Contains(log, "addr=127.0.0.1:"+port) {
		t.Errorf("no start line with the address in the log:\n%s", log)
	}
}

func TestBinaryWithoutServicePort(t *testing.T) {
	bin := proctest.Build(t, "./demos/calculator")
	_, stderr, code := proctest.Run(t, bin, nil, nil, 15*time.Second)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.HasPrefix(stderr, "calculator: SERVICE_PORT is not set") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line about SERVICE_PORT", stderr)
	}
}
