// Calculator is a Physarum demo service that does arithmetic over HTTP:
// GET /add?a=1&b=2 answers {"result":3}; /sub, /mul and /div likewise.
// A missing or bad number, or a division by zero, is answered 400 with a
// JSON error naming the parameter.
//
// It listens on 127.0.0.1:$SERVICE_PORT, as every Physarum service does
// behind its proxy (or on -listen for a local run), and shuts down
// gracefully on SIGTERM or SIGINT.
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

const usage = `Usage: calculator [-listen host:port]

Physarum's calculator demo service.

Endpoints (a and b are decimal numbers; answers are JSON):
  GET /add?a=1&b=2   {"result":3}
  GET /sub?a=1&b=2   {"result":-1}
  GET /mul?a=2&b=3   {"result":6}
  GET /div?a=1&b=4   {"result":0.25}
  GET /healthz       "ok"
Errors are 400 with {"error":"...","param":"a"}: a missing or bad number,
division by zero, or a result too large for a float64.

Environment:
  SERVICE_PORT  port to listen on, on 127.0.0.1 (required without -listen)

Flags:
`

// errFlags means the command line was wrong and the error has been
// reported, with the usage; main exits 2.
var errFlags = errors.New("bad command line")

// config is what calculator runs with.
type config struct {
	listen string // address to listen on
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errFlags):
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "calculator: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", "calculator")
	err = run(ctx, cfg, logger)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "calculator: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line and the environment into a config.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("calculator", flag.ContinueOnError)
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
		fmt.Fprintf(stderr, "calculator: unexpected argument %q; see calculator -help\n", fs.Arg(0))
		return config{}, errFlags
	}
	if *listen != "" {
		if err := demoservice.CheckListen(*listen); err != nil {
			fmt.Fprintf(stderr, "calculator: %v\n", err)
			return config{}, errFlags
		}
	}
	addr, err := demoservice.ListenAddr(*listen, getenv)
	if err != nil {
		return config{}, err
	}
	return config{listen: addr}, nil
}

// run serves calculator on cfg.listen until ctx ends.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return demoservice.Serve(ctx, demoservice.NewServer(newCalculator(), logger), ln, logger)
}
