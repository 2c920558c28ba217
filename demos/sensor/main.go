// Sensor is the first stage of Physarum's three-stage pipeline demo
// (sensor, aggregator, analytics). Each GET /reading produces a synthetic
// reading (sensor id, sequence number, timestamp, value) and POSTs it to
// the aggregator through the local proxy, at
// http://127.0.0.1:$PROXY_PORT/aggregator/ingest; it answers with the
// reading and what the rest of the chain answered, or 502 naming the stage
// that failed. It is request-driven, so the demo controls the load.
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
	"time"

	"github.com/physarum-p2p/physarum/demos/demoservice"
)

const usage = `Usage: sensor [-listen host:port] [-proxy URL] [-timeout 5s] [-id name]

The first stage of Physarum's pipeline demo: sensor -> aggregator -> analytics.

Endpoints:
  GET /reading           produce a reading, POST it to the aggregator through the
                         proxy (<proxy>/aggregator/ingest), and answer
                         {"reading":{...},"aggregator":{...}}. The value follows a
                         slow sine wave around 20; ?value=100 sends 100 instead
                         (to inject an anomaly). A stage that fails or does not
                         answer within -timeout gives 502 {"error":...,"stage":...}.
  GET /healthz           "ok"

Environment:
  SERVICE_PORT          port to listen on, on 127.0.0.1 (required without -listen)
  PROXY_PORT            port of the local proxy on 127.0.0.1 (required without -proxy)
  PHYSARUM_INSTANCE_ID  the sensor's id (default: the host name)

Flags:
`

// errFlags means the command line was wrong and the error has been
// reported, with the usage; main exits 2.
var errFlags = errors.New("bad command line")

// config is what sensor runs with.
type config struct {
	listen  string        // address to listen on
	proxy   string        // base URL of the local proxy
	timeout time.Duration // for the rest of the chain to answer
	id      string        // the sensor's id, in its readings
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Hostname, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errFlags):
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "sensor: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", "sensor")
	err = run(ctx, cfg, logger)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sensor: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line and the environment into a config.
func parseFlags(args []string, getenv func(string) string, hostname func() (string, error), stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("sensor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "", "address to listen on, e.g. 127.0.0.1:8080 (default 127.0.0.1:$SERVICE_PORT)")
	proxy := fs.String("proxy", "", "base URL of the local proxy (default http://127.0.0.1:$PROXY_PORT)")
	timeout := fs.Duration("timeout", demoservice.DefaultTimeout, "how long the rest of the chain may take to answer a reading")
	id := fs.String("id", "", "the sensor's id (default $PHYSARUM_INSTANCE_ID, or the host name)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, errFlags
	}
	var flagErr error
	switch {
	case fs.NArg() > 0:
		flagErr = fmt.Errorf("unexpected argument %q; see sensor -help", fs.Arg(0))
	case *listen != "" && demoservice.CheckListen(*listen) != nil:
		flagErr = demoservice.CheckListen(*listen)
	case *proxy != "" && demoservice.CheckProxy(*proxy) != nil:
		flagErr = demoservice.CheckProxy(*proxy)
	case *timeout <= 0 || *timeout > demoservice.MaxTimeout:
		flagErr = fmt.Errorf("-timeout %s: want more than 0s and at most %s", *timeout, demoservice.MaxTimeout)
	}
	if flagErr != nil {
		fmt.Fprintf(stderr, "sensor: %v\n", flagErr)
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
	cfg := config{listen: addr, proxy: base, timeout: *timeout, id: *id}
	if cfg.id == "" {
		cfg.id = instanceID(getenv, hostname)
	}
	return cfg, nil
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

// run serves sensor on cfg.listen until ctx ends.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s := newSensor(cfg.id, demoservice.NewStage(cfg.proxy, "aggregator", "/ingest", cfg.timeout))
	logger = logger.With("next", s.next.URL())
	return demoservice.Serve(ctx, demoservice.NewServer(s.handler(), logger), ln, logger)
}
