// Hello is Physarum's hello-world demo service. GET / answers
// "hello from <instance>"; its other endpoints exist to test the proxy:
// they echo requests, stream, stall, and take over connections.
//
// It listens on 127.0.0.1:$SERVICE_PORT, as every Physarum service does
// behind its proxy (or on -listen for a local run), and shuts down
// gracefully on SIGTERM or SIGINT. Run it with -help for the endpoints.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/physarum-p2p/physarum/demos/demoservice"
)

const usage = `Usage: hello [-listen host:port]

Physarum's hello-world demo service.

Endpoints:
  GET  /               "hello from <instance>"
  GET  /healthz        "ok"
  ANY  /echo[/...]     the request (method, path, query, headers, body) as JSON;
                       bodies up to 1 MiB
  ANY  /echo?raw       the request body streamed back as it arrives
  GET  /stream?n=5&delay=50ms
                       n text chunks, each flushed, delay apart (chunked)
  GET  /sleep?d=1s     answers after d (at most 10m)
  GET  /ws             with "Upgrade: websocket", switches protocols (101) and
                       echoes raw bytes back. Only for testing Upgrade
                       pass-through: the handshake follows RFC 6455, but there
                       is no framing, masking or close handshake after it.

Environment:
  SERVICE_PORT          port to listen on, on 127.0.0.1 (required without -listen)
  PHYSARUM_INSTANCE_ID  the instance named in answers (default: the host name)

Flags:
`

// errFlags means the command line was wrong and the error has been
// reported, with the usage; main exits 2.
var errFlags = errors.New("bad command line")

// config is what hello runs with.
type config struct {
	listen   string // address to listen on
	instance string // the instance named in answers
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Hostname, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errFlags):
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "hello: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", "hello")
	err = run(ctx, cfg, logger)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hello: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line and the environment into a config.
func parseFlags(args []string, getenv func(string) string, hostname func() (string, error), stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("hello", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "", "address to listen on, e.g. 127.0.0.1:8080 (default 127.0.0.1:$SERVICE_PORT)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, errFlags
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hello: unexpected argument %q; see hello -help\n", fs.Arg(0))
		return config{}, errFlags
	}
	if *listen != "" {
		if err := demoservice.CheckListen(*listen); err != nil {
			fmt.Fprintf(stderr, "hello: %v\n", err)
			return config{}, errFlags
		}
	}
	addr, err := demoservice.ListenAddr(*listen, getenv)
	if err != nil {
		return config{}, err
	}
	return config{listen: addr, instance: instanceID(getenv, hostname)}, nil
}

// instanceID names this instance: $PHYSARUM_INSTANCE_ID, else the host
// name (a container's ID under Docker).
func instanceID(getenv func(string) string, hostname func() (string, error)) string {
	if id := getenv("PHYSARUM_INSTANCE_ID"); id != "" {
		return id
	}
	if h, err := hostname(); err == nil && h != "" {
		return h
	}
	return "unknown"
}

// run serves hello on cfg.listen until ctx ends.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	h := newHello(cfg.instance)
	srv := demoservice.NewServer(h, logger)
	srv.RegisterOnShutdown(h.shutdown)
	return demoservice.Serve(ctx, srv, ln, logger)
}
