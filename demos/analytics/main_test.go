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
	port := map[string]string{"SERVICE_PORT": "8080"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string // in the error; "" for none
		flagErr bool   // a command-line error (exit 2)
	}{
		{name: "environment", env: port, want: config{listen: "127.0.0.1:8080", k: defaultK}},
		{name: "flags", args: []string{"-listen", "127.0.0.1:0", "-k", "3"}, want: config{listen: "127.0.0.1:0", k: 3}},
		{name: "no SERVICE_PORT", wantErr: "SERVICE_PORT is not set"},
		{name: "bad SERVICE_PORT", env: map[string]string{"SERVICE_PORT": "80a"}, wantErr: `SERVICE_PORT="80a" is not a port number`},
		{name: "k zero", args: []string{"-k", "0"}, env: port, flagErr: true},
		{name: "k NaN", args: []string{"-k", "NaN"}, env: port, flagErr: true},
		{name: "k Inf", args: []string{"-k", "Inf"}, env: port, flagErr: true},
		{name: "bad -listen", args: []string{"-listen", "x"}, env: port, flagErr: true},
		{name: "extra argument", args: []string{"x"}, env: port, flagErr: true},
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
		!strings.Contains(stderr.String(), "/analyze") || !strings.Contains(stderr.String(), "-k") {
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
	go func() {
		done <- demoservice.Serve(ctx, demoservice.NewServer(newAnalytics(defaultK), logger), ln, logger)
	}()
	if code, body := post(t, "http://"+ln.Addr().String()+"/analyze", `{"count":1,"mean":1,"min":1,"max":1,"stddev":0,"latest":1}`); code != 200 {
		t.Fatalf("POST /analyze: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	bin := proctest.Build(t, "./demos/analytics")
	port := strconv.Itoa(freeport.T(t))
	p := proctest.Start(t, "analytics", bin, nil, []string{"SERVICE_PORT=" + port})
	base := "http://127.0.0.1:" + port
	p.WaitHTTP(base+"/healthz", 15*time.Second)
	if code, body := post(t, base+"/analyze", `{"count":10,"mean":28,"min":20,"max":100,"stddev":24,"latest":100}`); code != 200 || !strings.Contains(string(body), `"verdict":"anomaly"`) {
		t.Errorf("POST /analyze: %d %s", code, body)
	}
	if code := p.Stop(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p.Stderr())
	}
	if log := p.Stderr(); !strings.Contains(log, "msg=listening") || !strings.Contains(log, "addr=127.0.0.1:"+port) {
		t.Errorf("no start line with the address in the log:\n%s", log)
	}
}

func TestBinaryWithoutServicePort(t *testing.T) {
	bin := proctest.Build(t, "./demos/analytics")
	_, stderr, code := proctest.Run(t, bin, nil, nil, 15*time.Second)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.HasPrefix(stderr, "analytics: SERVICE_PORT is not set") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line about SERVICE_PORT", stderr)
	}
}
