// Analytics is the last stage of Physarum's three-stage pipeline demo
// (sensor, aggregator, analytics). POST /analyze takes the aggregator's
// summary of its window (count, mean, min, max, standard deviation,
// latest value) and answers a verdict: "anomaly" when the window holds at
// least 3 readings and the latest lies more than -k (default 2.5)
// standard deviations from the mean, else "normal". The rule is
// deterministic: the same summary always gets the same verdict.
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
	"math"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/physarum-p2p/physarum/demos/demoservice"
)

const usage = `Usage: analytics [-listen host:port] [-k 2.5]

The last stage of Physarum's pipeline demo: sensor -> aggregator -> analytics.

Endpoints:
  POST /analyze  take a window summary
                 {"count":10,"mean":28,"min":20,"max":100,"stddev":24,"latest":100}
                 and answer {"verdict":"anomaly"|"normal","deviation":...,
                 "threshold":...,...}: "anomaly" when count >= 3 and
                 |latest - mean| > k * stddev. A missing or inconsistent
                 field gives 400 {"error":...,"field":...}.
  GET  /healthz  "ok"

A lone outlier among n readings lies at most (n-1)/sqrt(n) standard
deviations from their mean: with k = 2.5 the aggregator's window needs 9
readings or more (its default is 10) for one to be caught.

Environment:
  SERVICE_PORT  port to listen on, on 127.0.0.1 (required without -listen)

Flags:
`

// errFlags means the command line was wrong and the error has been
// reported, with the usage; main exits 2.
var errFlags = errors.New("bad command line")

// config is what analytics runs with.
type config struct {
	listen string  // address to listen on
	k      float64 // standard deviations from the mean that make an anomaly
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errFlags):
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "analytics: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", "analytics")
	err = run(ctx, cfg, logger)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "analytics: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line and the environment into a config.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("analytics", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "", "address to listen on, e.g. 127.0.0.1:8080 (default 127.0.0.1:$SERVICE_PORT)")
	k := fs.Float64("k", defaultK, "standard deviations from the mean that make the latest reading an anomaly")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, errFlags
	}
	var flagErr error
	switch {
	case fs.NArg() > 0:
		flagErr = fmt.Errorf("unexpected argument %q; see analytics -help", fs.Arg(0))
	case *listen != "" && demoservice.CheckListen(*listen) != nil:
		flagErr = demoservice.CheckListen(*listen)
	case !(*k > 0) || math.IsInf(*k, 0):
		flagErr = fmt.Errorf("-k %g: want a number above 0", *k)
	}
	if flagErr != nil {
		fmt.Fprintf(stderr, "analytics: %v\n", flagErr)
		return config{}, errFlags
	}
	addr, err := demoservice.ListenAddr(*listen, getenv)
	if err != nil {
		return config{}, err
	}
	return config{listen: addr, k: *k}, nil
}

// run serves analytics on cfg.listen until ctx ends.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	logger = logger.With("k", cfg.k)
	return demoservice.Serve(ctx, demoservice.NewServer(newAnalytics(cfg.k), logger), ln, logger)
}
