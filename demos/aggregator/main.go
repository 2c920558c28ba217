// Aggregator is the second stage of Physarum's three-stage pipeline demo
// (sensor, aggregator, analytics). POST /ingest takes a reading, keeps it
// in a sliding window of the last WINDOW readings (default 10), and sends
// the window's summary (count, mean, min, max, standard deviation, latest
// value) to analytics through the local proxy, at
// http://127.0.0.1:$PROXY_PORT/analytics/analyze; it answers with the
// summary and analytics' verdict, or 502 naming the stage that failed.
// GET /stats answers the current summary.
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
	"os"
	"strconv"
	"time"

	"github.com/physarum-p2p/physarum/demos/demoservice"
)

const usage = `Usage: aggregator [-listen host:port] [-proxy URL] [-timeout 5s] [-window N]

The second stage of Physarum's pipeline demo: sensor -> aggregator -> analytics.

Endpoints:
  POST /ingest   take a reading {"sensor":"s1","value":20.5}, add it to the
                 window, POST the window's summary to analytics through the
                 proxy (<proxy>/analytics/analyze), and answer
                 {"summary":{...},"analytics":{...}}. Analytics failing or not
                 answering within -timeout gives 502 {"error":...,"stage":"analytics"}.
  GET  /stats    the window's summary: {"count","window","mean","min","max",
                 "stddev","latest"} ({"count":0,"window":N} when empty)
  GET  /healthz  "ok"

Environment:
  SERVICE_PORT  port to listen on, on 127.0.0.1 (required without -listen)
  PROXY_PORT    port of the local proxy on 127.0.0.1 (required without -proxy)
  WINDOW        readings in the window (default 10; -window wins)

Flags:
`

// config is what aggregator runs with.
type config struct {
	listen  string        // address to listen on
	proxy   string        // base URL of the local proxy
	timeout time.Duration // for analytics to answer
	window  int           // readings in the window
}

func main() {
	parse := func() (config, error) { return parseFlags(os.Args[1:], os.Getenv, os.Stderr) }
	os.Exit(demoservice.Main("aggregator", os.Stderr, parse, run))
}

// parseFlags reads the command line and the environment into a config.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	windowSet := false
	cmd := demoservice.Command{
		Name:  "aggregator",
		Usage: usage,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.proxy, "proxy", "", "base URL of the local proxy (default http://127.0.0.1:$PROXY_PORT)")
			fs.DurationVar(&cfg.timeout, "timeout", demoservice.DefaultTimeout, "how long analytics may take to answer")
			fs.IntVar(&cfg.window, "window", 0, fmt.Sprintf("readings in the window, 1 to %d (default $WINDOW, or %d)", maxWindow, defaultWindow))
		},
		Check: func(fs *flag.FlagSet) error {
			if err := demoservice.CheckStageFlags(cfg.proxy, cfg.timeout); err != nil {
				return err
			}
			fs.Visit(func(f *flag.Flag) { windowSet = windowSet || f.Name == "window" })
			if windowSet && (cfg.window < 1 || cfg.window > maxWindow) {
				return fmt.Errorf("-window %d: want 1 to %d", cfg.window, maxWindow)
			}
			return nil
		},
	}
	common, err := cmd.Parse(args, getenv, stderr)
	if err != nil {
		return config{}, err
	}
	cfg.listen = common.Listen
	if cfg.proxy, err = demoservice.ProxyBase(cfg.proxy, getenv); err != nil {
		return config{}, err
	}
	if !windowSet {
		if cfg.window, err = windowFromEnv(getenv); err != nil {
			return config{}, err
		}
	}
	return cfg, nil
}

// windowFromEnv reads $WINDOW; defaultWindow when it is not set.
func windowFromEnv(getenv func(string) string) (int, error) {
	s := getenv("WINDOW")
	if s == "" {
		return defaultWindow, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxWindow {
		return 0, fmt.Errorf("WINDOW=%q is not a whole number from 1 to %d", s, maxWindow)
	}
	return n, nil
}

// run serves aggregator on cfg.listen until ctx ends.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	a := newAggregator(cfg.window, demoservice.NewStage(cfg.proxy, "analytics", "/analyze", cfg.timeout))
	logger = logger.With("next", a.next.URL(), "window", cfg.window)
	return demoservice.ListenAndServe(ctx, cfg.listen, demoservice.NewServer(a.handler(), logger), logger)
}
