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
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"

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

// config is what analytics runs with.
type config struct {
	listen string  // address to listen on
	k      float64 // standard deviations from the mean that make an anomaly
}

func main() {
	parse := func() (config, error) { return parseFlags(os.Args[1:], os.Getenv, os.Stderr) }
	os.Exit(demoservice.Main("analytics", os.Stderr, parse, run))
}

// parseFlags reads the command line and the environment into a config.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var k float64
	cmd := demoservice.Command{
		Name:  "analytics",
		Usage: usage,
		Flags: func(fs *flag.FlagSet) {
			fs.Float64Var(&k, "k", defaultK, "standard deviations from the mean that make the latest reading an anomaly")
		},
		Check: func(*flag.FlagSet) error {
			if !(k > 0) || math.IsInf(k, 0) {
				return fmt.Errorf("-k %g: want a number above 0", k)
			}
			return nil
		},
	}
	common, err := cmd.Parse(args, getenv, stderr)
	if err != nil {
		return config{}, err
	}
	return config{listen: common.Listen, k: k}, nil
}

// run serves analytics on cfg.listen until ctx ends.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	logger = logger.With("k", cfg.k)
	return demoservice.ListenAndServe(ctx, cfg.listen, demoservice.NewServer(newAnalytics(cfg.k), logger), logger)
}
