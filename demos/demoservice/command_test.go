package demoservice

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
)

// testCommand is a service with one flag of its own, -n, which must be
// positive.
func testCommand(n *int) Command {
	return Command{
		Name:  "svc",
		Usage: "Usage: svc [-listen host:port] [-n N]\n\nFlags:\n",
		Flags: func(fs *flag.FlagSet) { fs.IntVar(n, "n", 1, "a positive number") },
		Check: func(*flag.FlagSet) error {
			if *n < 1 {
				return fmt.Errorf("-n %d: want 1 or more", *n)
			}
			return nil
		},
	}
}

func TestCommandParse(t *testing.T) {
	env := map[string]string{"SERVICE_PORT": "8080"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Config
		wantN   int
		err     error  // errors.Is; nil for none
		wantErr string // the error; "" for none
		stderr  string // what Parse reports
	}{
		{name: "environment", env: env, want: Config{Listen: "127.0.0.1:8080"}, wantN: 1},
		{name: "flags", args: []string{"-listen", ":9", "-n", "3"}, want: Config{Listen: ":9"}, wantN: 3},
		{name: "no SERVICE_PORT", err: ErrNoEnv,
			wantErr: "SERVICE_PORT is not set; run the service under a Physarum proxy, or pass -listen 127.0.0.1:8080"},
		{name: "argument", args: []string{"-n", "2", "x", "y"}, env: env, err: ErrFlags,
			stderr: "svc: unexpected argument \"x\"; see svc -help\n"},
		{name: "bad listen", args: []string{"-listen", "x"}, env: env, err: ErrFlags,
			stderr: "svc: -listen \"x\": want host:port, e.g. 127.0.0.1:8080\n"},
		{name: "own check", args: []string{"-n", "0"}, env: env, err: ErrFlags, stderr: "svc: -n 0: want 1 or more\n"},
		{name: "argument before own check", args: []string{"-n", "0", "x"}, env: env, err: ErrFlags,
			stderr: "svc: unexpected argument \"x\"; see svc -help\n"},
		{name: "help", args: []string{"-help"}, err: flag.ErrHelp,
			stderr: "Usage: svc [-listen host:port] [-n N]\n\nFlags:\n" +
				"  -listen string\n    \taddress to listen on, e.g. 127.0.0.1:8080 (default 127.0.0.1:$SERVICE_PORT)\n" +
				"  -n int\n    \ta positive number (default 1)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n int
			var stderr strings.Builder
			got, err := testCommand(&n).Parse(tt.args, func(k string) string { return tt.env[k] }, &stderr)
			switch {
			case tt.err != nil || tt.wantErr != "":
				if !errors.Is(err, tt.err) || (tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr)) {
					t.Fatalf("err %v; want %v %q", err, tt.err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case got != tt.want || n != tt.wantN:
				t.Fatalf("config %+v, -n %d; want %+v, %d", got, n, tt.want, tt.wantN)
			}
			if stderr.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.stderr)
			}
		})
	}
}

func TestCommandParseBadFlag(t *testing.T) {
	var n int
	var stderr strings.Builder
	_, err := testCommand(&n).Parse([]string{"-n", "many"}, func(string) string { return "" }, &stderr)
	if !errors.Is(err, ErrFlags) || !strings.HasPrefix(stderr.String(), "invalid value \"many\" for flag -n") ||
		!strings.Contains(stderr.String(), "Usage: svc") {
		t.Fatalf("err %v, stderr %q; want ErrFlags, the flag package's message and the usage", err, stderr.String())
	}
}

func TestInstanceID(t *testing.T) {
	host := func() (string, error) { return "box", nil }
	noHost := func() (string, error) { return "", errors.New("no host name") }
	env := func(k string) string { return map[string]string{"PHYSARUM_INSTANCE_ID": "i-1"}[k] }
	none := func(string) string { return "" }
	if id := InstanceID(env, host); id != "i-1" {
		t.Errorf("with PHYSARUM_INSTANCE_ID: %q", id)
	}
	if id := InstanceID(none, host); id != "box" {
		t.Errorf("with a host name: %q", id)
	}
	if id := InstanceID(none, noHost); id != "unknown" {
		t.Errorf("with neither: %q", id)
	}
}

// TestMainExitCodes runs Main with parse and run stand-ins, and checks
// the exit code and what it writes for each way they end.
func TestMainExitCodes(t *testing.T) {
	failed := errors.New("it broke")
	for _, tt := range []struct {
		name     string
		parseErr error
		runErr   error
		code     int
		stderr   string
	}{
		{"help", flag.ErrHelp, nil, 0, ""},
		{"bad command line", fmt.Errorf("reported: %w", ErrFlags), nil, 2, ""},
		{"bad environment", failed, nil, 1, "svc: it broke\n"},
		{"run fails", nil, failed, 1, "svc: it broke\n"},
		{"run ends", nil, nil, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			ran := false
			parse := func() (int, error) { return 7, tt.parseErr }
			run := func(_ context.Context, cfg int, _ *slog.Logger) error {
				ran = true
				if cfg != 7 {
					t.Errorf("run got %d, want what parse returned", cfg)
				}
				return tt.runErr
			}
			if code := Main("svc", &stderr, parse, run); code != tt.code || stderr.String() != tt.stderr {
				t.Errorf("exit code %d, stderr %q; want %d, %q", code, stderr.String(), tt.code, tt.stderr)
			}
			if ran != (tt.parseErr == nil) {
				t.Errorf("run ran: %t, want %t", ran, tt.parseErr == nil)
			}
		})
	}
}

// TestMainStopsOnSIGTERM sends SIGTERM to the test process while run
// waits for its context: Main must end the context, not the process, and
// exit 0. The logger is tagged with the service.
func TestMainStopsOnSIGTERM(t *testing.T) {
	var stderr strings.Builder
	run := func(ctx context.Context, _ struct{}, logger *slog.Logger) error {
		logger.Info("waiting")
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	if code := Main("svc", &stderr, func() (struct{}, error) { return struct{}{}, nil }, run); code != 0 {
		t.Fatalf("exit code %d, want 0; stderr %q", code, stderr.String())
	}
	if s := stderr.String(); !strings.Contains(s, "level=INFO msg=waiting service=svc") {
		t.Errorf("log %q, want a text line tagged service=svc", s)
	}
}

func TestListenAndServeFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logger := slog.New(slog.DiscardHandler)
	err = ListenAndServe(t.Context(), ln.Addr().String(), NewServer(http.NotFoundHandler(), logger), logger)
	if err == nil || !strings.HasPrefix(err.Error(), "listen: ") {
		t.Fatalf("ListenAndServe on a port in use: %v", err)
	}
}
