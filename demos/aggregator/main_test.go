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
	ports := map[string]string{"SERVICE_PORT": "8080", "PROXY_PORT": "4201"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range ports {
			if _, ok := m[k]; !ok {
				m[k] = v
			}
		}
		return m
	}
	def := config{listen: "127.0.0.1:8080", proxy: "http://127.0.0.1:4201", timeout: demoservice.DefaultTimeout, window: defaultWindow}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string // in the error; "" for none
		flagErr bool   // a command-line error (exit 2)
	}{
		{name: "environment", env: ports, want: def},
		{name: "WINDOW", env: with("WINDOW", "3"), want: config{def.listen, def.proxy, def.timeout, 3}},
		{name: "flags win", args: []string{"-listen", "127.0.0.1:0", "-proxy", "http://127.0.0.1:9/", "-timeout", "1s", "-window", "5"},
			env:  with("WINDOW", "3"),
			want: config{"127.0.0.1:0", "http://127.0.0.1:9", time.Second, 5}},
		{name: "no SERVICE_PORT", env: map[string]string{"PROXY_PORT": "4201"}, wantErr: "SERVICE_PORT is not set"},
		{name: "bad SERVICE_PORT", env: with("SERVICE_PORT", "-1"), wantErr: `SERVICE_PORT="-1" is not a port number`},
		{name: "no PROXY_PORT", env: map[string]string{"SERVICE_PORT": "8080"}, wantErr: "PROXY_PORT is not set"},
		{name: "bad WINDOW", env: with("WINDOW", "0"), wantErr: `WINDOW="0" is not a whole number`},
		{name: "bad -window", args: []string{"-window", "0"}, env: ports, flagErr: true},
		{name: "bad -timeout", args: []string{"-timeout", "0s"}, env: ports, flagErr: true},
		{name: "bad -proxy", args: []string{"-proxy", "127.0.0.1:4201"}, env: ports, flagErr: true},
		{name: "bad -listen", args: []string{"-listen", "x"}, env: ports, flagErr: true},
		{name: "extra argument", args: []string{"x"}, env: ports, flagErr: true},
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
		!strings.Contains(stderr.String(), "WINDOW") || !strings.Contains(stderr.String(), "/stats") {
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
	a := newAggregator(3, demoservice.NewStage("http://127.0.0.1:1", "analytics", "/analyze", time.Second))
	done := make(chan error, 1)
	go func() { done <- demoservice.Serve(ctx, demoservice.NewServer(a.handler(), logger), ln, logger) }()
	if code, body := call(t, "GET", "http://"+ln.Addr().String()+"/stats", ""); code != 200 {
		t.Fatalf("GET /stats: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT and PROXY_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	bin := proctest.Build(t, "./demos/aggregator")
	port := strconv.Itoa(freeport.T(t))
	p := proctest.Start(t, "aggregator", bin, nil, []string{"SERVICE_PORT=" + port, "PROXY_PORT=1", "WINDOW=4"})
	base := "http://127.0.0.1:" + port
	p.WaitHTTP(base+"/healthz", 15*time.Second)
	if code, body := call(t, "GET", base+"/stats", ""); code != 200 || strings.TrimSpace(string(body)) != `{"count":0,"window":4}` {
		t.Errorf("GET /stats: %d %s", code, body)
	}
	if code := p.Stop(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p.Stderr())
	}
	if log := p.Stderr(); !strings.Contains(log, "msg=listening") || !strings.Contains(log, "addr=127.0.0.1:"+port) {
		t.Errorf("no start line with the address in the log:\n%s", log)
	}
}

func TestBinaryWithoutServicePort(t *testing.T) {
	bin := proctest.Build(t, "./demos/aggregator")
	_, stderr, code := proctest.Run(t, bin, nil, []string{"PROXY_PORT=4201"}, 15*time.Second)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.HasPrefix(stderr, "aggregator: SERVICE_PORT is not set") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line about SERVICE_PORT", stderr)
	}
}
