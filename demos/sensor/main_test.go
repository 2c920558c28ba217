package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
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
	host := func() (string, error) { return "box", nil }
	ports := map[string]string{"SERVICE_PORT": "8080", "PROXY_PORT": "4201"}
	def := config{listen: "127.0.0.1:8080", proxy: "http://127.0.0.1:4201", timeout: demoservice.DefaultTimeout, id: "box"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string // in the error; "" for none
		flagErr bool   // a command-line error (exit 2)
	}{
		{name: "environment", env: ports, want: def},
		{name: "instance id", env: map[string]string{"SERVICE_PORT": "8080", "PROXY_PORT": "4201", "PHYSARUM_INSTANCE_ID": "i-3"},
			want: config{def.listen, def.proxy, def.timeout, "i-3"}},
		{name: "flags win", args: []string{"-listen", "127.0.0.1:0", "-proxy", "http://127.0.0.1:9", "-timeout", "1s", "-id", "s9"},
			want: config{"127.0.0.1:0", "http://127.0.0.1:9", time.Second, "s9"}},
		{name: "no SERVICE_PORT", env: map[string]string{"PROXY_PORT": "4201"}, wantErr: "SERVICE_PORT is not set"},
		{name: "no PROXY_PORT", env: map[string]string{"SERVICE_PORT": "8080"}, wantErr: "PROXY_PORT is not set"},
		{name: "bad PROXY_PORT", env: map[string]string{"SERVICE_PORT": "8080", "PROXY_PORT": "99999"}, wantErr: `PROXY_PORT="99999" is not a port number`},
		{name: "bad -timeout", args: []string{"-timeout", "-1s"}, env: ports, flagErr: true},
		{name: "bad -proxy", args: []string{"-proxy", "localhost:4201"}, env: ports, flagErr: true},
		{name: "bad -listen", args: []string{"-listen", "x"}, env: ports, flagErr: true},
		{name: "extra argument", args: []string{"x"}, env: ports, flagErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			got, err := parseFlags(tt.args, envOf(tt.env), host, &stderr)
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
	if _, err := parseFlags([]string{"-help"}, envOf(nil), host, &stderr); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(stderr.String(), "PROXY_PORT") || !strings.Contains(stderr.String(), "?value=") {
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
	s := newSensor("s1", demoservice.NewStage("http://127.0.0.1:1", "aggregator", "/ingest", time.Second))
	done := make(chan error, 1)
	go func() { done <- demoservice.Serve(ctx, demoservice.NewServer(s.handler(), logger), ln, logger) }()
	if code, body := get(t, "http://"+ln.Addr().String()+"/healthz"); code != 200 {
		t.Fatalf("GET /healthz: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT and PROXY_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	bin := proctest.Build(t, "./demos/sensor")
	port := strconv.Itoa(freeport.T(t))
	p := proctest.Start(t, "sensor", bin, nil, []string{"SERVICE_PORT=" + port, "PROXY_PORT=1"})
	base := "http://127.0.0.1:" + port
	p.WaitHTTP(base+"/healthz", 15*time.Second)
	// Nothing listens on port 1: the aggregator is unreachable.
	if code, body := get(t, base+"/reading"); code != http.StatusBadGateway || !strings.Contains(string(body), `"stage":"aggregator"`) {
		t.Errorf("GET /reading with no proxy: %d %s", code, body)
	}
	if code := p.Stop(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p.Stderr())
	}
	if log := p.Stderr(); !strings.Contains(log, "msg=listening") || !strings.Contains(log, "addr=127.0.0.1:"+port) {
		t.Errorf("no start line with the address in the log:\n%s", log)
	}
}

func TestBinaryWithoutServicePort(t *testing.T) {
	bin := proctest.Build(t, "./demos/sensor")
	_, stderr, code := proctest.Run(t, bin, nil, []string{"PROXY_PORT=4201"}, 15*time.Second)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.HasPrefix(stderr, "sensor: SERVICE_PORT is not set") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line about SERVICE_PORT", stderr)
	}
}
