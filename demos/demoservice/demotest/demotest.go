// Package demotest holds the tests every demo service (hello,
// calculator, sensor, aggregator, analytics) shares, over what
// demoservice gives them: the cases of the command line they have in
// common (CommonFlags, Help) and a runner for each demo's own cases
// (FlagCases); serving a handler and stopping it (Serve); running the
// built binary as the allocator would (StartBinary, RunBinary) and
// checking its exit codes (BinaryExitCodes); calling an endpoint (Do,
// Call); and standing in for the next stage of the pipeline (NextStage).
package demotest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/demos/demoservice"
)

// Timeout bounds how long a binary may take to start answering, to exit
// after SIGTERM, or to run to its end.
const Timeout = 15 * time.Second

// Env is a stand-in environment: Getenv reads it.
type Env map[string]string

// Getenv is os.Getenv over e.
func (e Env) Getenv(key string) string { return e[key] }

// With returns a copy of e with the pairs kv (key, value, key, value...)
// set.
func (e Env) With(kv ...string) Env {
	if len(kv)%2 != 0 {
		panic("demotest: Env.With takes key, value pairs")
	}
	c := maps.Clone(e)
	if c == nil {
		c = Env{}
	}
	for i := 0; i < len(kv); i += 2 {
		c[kv[i]] = kv[i+1]
	}
	return c
}

// Parse is a demo's parseFlags: it reads the command line args and the
// environment (through getenv) into the demo's config, and fails as
// demoservice.Command.Parse does.
type Parse[C any] func(args []string, getenv func(string) string, stderr io.Writer) (C, error)

// OnHost turns a parseFlags that also reads the host name (to name the
// instance, see demoservice.InstanceID) into a Parse, on a host named
// host.
func OnHost[C any](parse func(args []string, getenv func(string) string, hostname func() (string, error), stderr io.Writer) (C, error), host string) Parse[C] {
	return func(args []string, getenv func(string) string, stderr io.Writer) (C, error) {
		return parse(args, getenv, func() (string, error) { return host, nil }, stderr)
	}
}

// FlagCase is a case of a demo's command line.
type FlagCase[C comparable] struct {
	Name    string
	Args    []string
	Env     Env
	Want    C      // the config, when neither error is expected
	WantErr string // in the error, which is one line; "" for none
	FlagErr bool   // a command-line error (exit 2), reported on stderr
}

// FlagCases runs each case against parse, as a subtest.
func FlagCases[C comparable](t *testing.T, parse Parse[C], cases []FlagCase[C]) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			var stderr strings.Builder
			got, err := parse(tt.Args, tt.Env.Getenv, &stderr)
			switch {
			case tt.FlagErr:
				if !errors.Is(err, demoservice.ErrFlags) || stderr.Len() == 0 {
					t.Fatalf("err %v, stderr %q; want ErrFlags, reported", err, stderr.String())
				}
			case tt.WantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.WantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err %v, want one line holding %q", err, tt.WantErr)
				}
			case err != nil:
				t.Fatal(err)
			case got != tt.Want:
				t.Fatalf("config %+v, want %+v", got, tt.Want)
			}
		})
	}
}

// CommonFlags runs against parse the cases of the command line every
// demo has: the address to listen on from SERVICE_PORT or -listen, and
// what is refused (no or a bad SERVICE_PORT, a bad -listen, an argument,
// an unknown flag). env is the rest of what the demo needs to start
// (PROXY_PORT, say); listen reads the address from the demo's config.
func CommonFlags[C any](t *testing.T, env Env, parse Parse[C], listen func(C) string) {
	t.Helper()
	parseListen := func(args []string, getenv func(string) string, stderr io.Writer) (string, error) {
		cfg, err := parse(args, getenv, stderr)
		return listen(cfg), err
	}
	port := env.With("SERVICE_PORT", "8080")
	FlagCases(t, parseListen, []FlagCase[string]{
		{Name: "service port", Env: port, Want: "127.0.0.1:8080"},
		{Name: "service port 65535", Env: env.With("SERVICE_PORT", "65535"), Want: "127.0.0.1:65535"},
		{Name: "listen wins", Args: []string{"-listen", "127.0.0.1:0"}, Env: port, Want: "127.0.0.1:0"},
		{Name: "listen without SERVICE_PORT", Args: []string{"-listen", ":9000"}, Env: env, Want: ":9000"},
		{Name: "no SERVICE_PORT", Env: env, WantErr: "SERVICE_PORT is not set; run the service under a Physarum proxy, or pass -listen"},
		{Name: "SERVICE_PORT not a number", Env: env.With("SERVICE_PORT", "http"), WantErr: `SERVICE_PORT="http" is not a port number`},
		{Name: "SERVICE_PORT zero", Env: env.With("SERVICE_PORT", "0"), WantErr: "not a port number"},
		{Name: "SERVICE_PORT too big", Env: env.With("SERVICE_PORT", "65536"), WantErr: "not a port number"},
		{Name: "bad listen", Args: []string{"-listen", "8080"}, Env: port, FlagErr: true},
		{Name: "listen not an address", Args: []string{"-listen", "x"}, Env: port, FlagErr: true},
		{Name: "extra argument", Args: []string{"x"}, Env: port, FlagErr: true},
		{Name: "argument after flags", Args: []string{"-listen", ":1", "x"}, Env: port, FlagErr: true},
		{Name: "unknown flag", Args: []string{"-port", "1"}, Env: port, FlagErr: true},
	})
}

// Help checks that parse answers -help with flag.ErrHelp and the usage
// of the demo: its name, -listen and SERVICE_PORT, and each of mentions.
func Help[C any](t *testing.T, name string, parse Parse[C], mentions ...string) {
	t.Helper()
	var stderr strings.Builder
	_, err := parse([]string{"-help"}, Env{}.Getenv, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: err %v, want flag.ErrHelp", err)
	}
	out := stderr.String()
	if !strings.HasPrefix(out, "Usage: "+name+" ") {
		t.Errorf("-help does not start with %q:\n%s", "Usage: "+name, out)
	}
	for _, s := range append([]string{"SERVICE_PORT", "-listen", "Flags:"}, mentions...) {
		if !strings.Contains(out, s) {
			t.Errorf("-help does not mention %s:\n%s", s, out)
		}
	}
}

// Serve answers with srv on a port of 127.0.0.1 through
// demoservice.Serve, and returns the base URL (http://host:port) and
// stop, which ends Serve's context and returns what Serve returned. The
// test's cleanup stops it too.
func Serve(t *testing.T, srv *http.Server) (base string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background()) // t.Context ends before the cleanup runs
	done := make(chan error, 1)
	go func() { done <- demoservice.Serve(ctx, srv, ln, slog.New(slog.DiscardHandler)) }()
	var once sync.Once
	var serveErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + ln.Addr().String(), stop
}

// StartBinary builds the demo ./demos/<name> and starts it as the
// allocator would: with SERVICE_PORT set to a free port, and env on top.
// It returns once GET /healthz answers 200, with the process and the
// address it listens on; the test's cleanup kills it.
func StartBinary(t testing.TB, name string, env ...string) (p *proctest.Proc, addr string) {
	t.Helper()
	bin := proctest.Build(t, "./demos/"+name)
	port := strconv.Itoa(freeport.T(t))
	p = proctest.Start(t, name, bin, nil, append(env, "SERVICE_PORT="+port))
	addr = "127.0.0.1:" + port
	p.WaitHTTP("http://"+addr+"/healthz", Timeout)
	return p, addr
}

// RunBinary runs the demo ./demos/<name> as StartBinary does, calls check
// with its base URL (http://127.0.0.1:$SERVICE_PORT), then stops it with
// SIGTERM and checks that it exits 0, having logged the address it
// listened on.
func RunBinary(t *testing.T, name string, env []string, check func(base string)) {
	t.Helper()
	p, addr := StartBinary(t, name, env...)
	check("http://" + addr)
	if code := p.Stop(Timeout); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p.Stderr())
	}
	if log := p.Stderr(); !strings.Contains(log, "msg=listening") || !strings.Contains(log, "addr="+addr) {
		t.Errorf("no start line with the address in the log:\n%s", log)
	}
}

// BinaryExitCodes checks the exit codes of the demo ./demos/<name>, run
// with env (what it needs besides SERVICE_PORT): 0 after -help, which
// prints the usage on stderr; 2 for an unknown flag; 1, with one line
// naming the demo and SERVICE_PORT, when SERVICE_PORT is not set.
func BinaryExitCodes(t *testing.T, name string, env ...string) {
	t.Helper()
	bin := proctest.Build(t, "./demos/"+name)
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string // what stderr starts with
		lines  int    // how many lines stderr has; 0 for any number
	}{
		{[]string{"-help"}, 0, "Usage: " + name + " ", 0},
		{[]string{"-no-such-flag"}, 2, "flag provided but not defined: -no-such-flag\nUsage: " + name + " ", 0},
		{nil, 1, name + ": SERVICE_PORT is not set", 1},
	} {
		stdout, stderr, code := proctest.Run(t, bin, tt.args, env, Timeout)
		if code != tt.code || stdout != "" || !strings.HasPrefix(stderr, tt.stderr) ||
			(tt.lines > 0 && strings.Count(stderr, "\n") != tt.lines) {
			t.Errorf("%s %q: exit code %d, stdout %q, stderr %q; want exit code %d, nothing on stdout, and stderr starting with %q",
				name, tt.args, code, stdout, stderr, tt.code, tt.stderr)
		}
	}
}

// NextStage stands in for the local proxy and the next stage of the
// pipeline behind it: it takes the JSON values of type T POSTed to Path
// (/<service><path>, where a demoservice.Stage sends them), records them,
// and answers each with Answer. Anything else is a 404, a body that is
// not a T a 400. It is safe for concurrent use.
type NextStage[T any] struct {
	Path   string
	Answer func(w http.ResponseWriter, v T)

	mu  sync.Mutex
	got []T
}

// ServeHTTP takes a value, as described on NextStage.
func (f *NextStage[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.URL.Path != f.Path {
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	var v T
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.got = append(f.got, v)
	f.mu.Unlock()
	f.Answer(w, v)
}

// Got returns the values taken so far, in order.
func (f *NextStage[T]) Got() []T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// Do sends req and returns the response with its whole body (closed).
func Do(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp, b
}

// Call sends method url with body (JSON, when there is one) and returns
// the status and the body of the answer.
func Call(t testing.TB, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, b := Do(t, req)
	return resp.StatusCode, b
}
