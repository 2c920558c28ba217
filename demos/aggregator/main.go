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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
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

// errFlags means the command line was wrong and the error has been
// reported, with the usage; main exits 2.
var errFlags = errors.New("bad command line")

// config is what aggregator runs with.
type config struct {
	listen  string        // address to listen on
	proxy   string        // base URL of the local proxy
	timeout time.Duration // for analytics to answer
	window  int           // readings in the window
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errFlags):
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "aggregator: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", "aggregator")
	err = run(ctx, cfg, logger)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "aggregator: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line and the environment into a config.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "", "address to listen on, e.g. 127.0.0.1:8080 (default 127.0.0.1:$SERVICE_PORT)")
	proxy := fs.String("proxy", "", "base URL of the local proxy (default http://127.0.0.1:$PROXY_PORT)")
	timeout := fs.Duration("timeout", demoservice.DefaultTimeout, "how long analytics may take to answer")
	window := fs.Int("window", 0, fmt.Sprintf("readings in the window, 1 to %d (default $WINDOW, or %d)", maxWindow, defaultWindow))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, errFlags
	}
	windowSet := false
	fs.Visit(func(f *flag.Flag) { windowSet = windowSet || f.Name == "window" })
	var flagErr error
	switch {
	case fs.NArg() > 0:
		flagErr = fmt.Errorf("unexpected argument %q; see aggregator -help", fs.Arg(0))
	case *listen != "" && demoservice.CheckListen(*listen) != nil:
		flagErr = demoservice.CheckListen(*listen)
	case *proxy != "" && demoservice.CheckProxy(*proxy) != nil:
		flagErr = demoservice.CheckProxy(*proxy)
	case *timeout <= 0 || *timeout > demoservice.MaxTimeout:
		flagErr = fmt.Errorf("-timeout %s: want more than 0s and at most %s", *timeout, demoservice.MaxTimeout)
	case windowSet && (*window < 1 || *window > maxWindow):
		flagErr = fmt.Errorf("-window %d: want 1 to %d", *window, maxWindow)
	}
	if flagErr != nil {
		fmt.Fprintf(stderr, "aggregator: %v\n", flagErr)
		return config{}, errFlags
	}
	addr, err := demoservice.ListenAddr(*listen, getenv)
	if err != nil {
		return config{}, err
	}
	base, err := demoservice.ProxyBase(*proxy, getenv)
	if err != nil {
		return config{}, err
	}
	cfg := config{listen: addr, proxy: base, timeout: *timeout, window: *window}
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
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	a := newAggregator(cfg.window, demoservice.NewStage(cfg.proxy, "analytics", "/analyze", cfg.timeout))
	logger = logger.With("next", a.next.URL(), "window", cfg.window)
	return demoservice.Serve(ctx, demoservice.NewServer(a.handler(), logger), ln, logger)
}
