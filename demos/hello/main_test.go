package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
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
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string // in the error; "" for none
		flagErr bool   // a command-line error (exit 2)
	}{
		{name: "service port", env: map[string]string{"SERVICE_PORT": "8080"},
			want: config{listen: "127.0.0.1:8080", instance: "box"}},
		{name: "instance id", env: map[string]string{"SERVICE_PORT": "1", "PHYSARUM_INSTANCE_ID": "i-7"},
			want: config{listen: "127.0.0.1:1", instance: "i-7"}},
		{name: "listen wins", args: []string{"-listen", "127.0.0.1:0"}, env: map[string]string{"SERVICE_PORT": "8080"},
			want: config{listen: "127.0.0.1:0", instance: "box"}},
		{name: "listen without SERVICE_PORT", args: []string{"-listen", ":9000"},
			want: config{listen: ":9000", instance: "box"}},
		{name: "no SERVICE_PORT", wantErr: "SERVICE_PORT is not set"},
		{name: "SERVICE_PORT not a number", env: map[string]string{"SERVICE_PORT": "http"}, wantErr: `SERVICE_PORT="http" is not a port number`},
		{name: "SERVICE_PORT zero", env: map[string]string{"SERVICE_PORT": "0"}, wantErr: "not a port number"},
		{name: "SERVICE_PORT too big", env: map[string]string{"SERVICE_PORT": "65536"}, wantErr: "not a port number"},
		{name: "bad listen", args: []string{"-listen", "8080"}, flagErr: true},
		{name: "extra argument", args: []string{"x"}, env: map[string]string{"SERVICE_PORT": "1"}, flagErr: true},
		{name: "unknown flag", args: []string{"-port", "1"}, flagErr: true},
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
}

func TestHelp(t *testing.T) {
	var stderr strings.Builder
	_, err := parseFlags([]string{"-help"}, envOf(nil), nil, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err %v, want flag.ErrHelp", err)
	}
	for _, s := range []string{"SERVICE_PORT", "/echo", "/stream", "/sleep", "/ws", "-listen", "RFC 6455"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("-help does not mention %s:\n%s", s, stderr.String())
		}
	}
}

// TestServeShutsDownGracefully starts a stream that would run for a minute,
// stops the server, and checks that the stream ends and Serve returns nil.
func TestServeShutsDownGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	h := newHello("test-1")
	srv := demoservice.NewServer(h, logger)
	srv.RegisterOnShutdown(h.shutdown)
	done := make(chan error, 1)
	go func() { done <- demoservice.Serve(ctx, srv, ln, logger) }()

	req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+ln.Addr().String()+"/stream?n=2&delay=1m", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "chunk 1 of 2\n" {
		t.Fatalf("first chunk: %q, %v", line, err)
	}
	cancel()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after shutdown the stream went on with %q, %v", rest, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBinary runs the built binary as the allocator would: with
// SERVICE_PORT set, until SIGTERM.
func TestBinary(t *testing.T) {
	bin := proctest.Build(t, "./demos/hello")
	port := strconv.Itoa(freeport.T(t))
	p := proctest.Start(t, "hello", bin, nil, []string{"SERVICE_PORT=" + port, "PHYSARUM_INSTANCE_ID=bin-1"})
	base := "http://127.0.0.1:" + port
	p.WaitHTTP(base+"/healthz", 15*time.Second)

	resp, body := do(t, "GET", base+"/", nil, nil)
	wantStatus(t, resp, body, 200)
	if string(body) != "hello from bin-1\n" {
		t.Errorf("GET / = %q", body)
	}
	if code := p.Stop(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p.Stderr())
	}
	if log := p.Stderr(); !strings.Contains(log, "msg=listening") || !strings.Contains(log, "addr=127.0.0.1:"+port) {
		t.Errorf("no start line with the address in the log:\n%s", log)
	}
}

func TestBinaryWithoutServicePort(t *testing.T) {
	bin := proctest.Build(t, "./demos/hello")
	_, stderr, code := proctest.Run(t, bin, nil, nil, 15*time.Second)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.HasPrefix(stderr, "hello: SERVICE_PORT is not set") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line about SERVICE_PORT", stderr)
	}
}
