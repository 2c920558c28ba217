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
	"flag"
	"io"
	"log/slog"
	"os"
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

// config is what sensor runs with.
type config struct {
	listen  string        // address to listen on
	proxy   string        // base URL of the local proxy
	timeout time.Duration // for the rest of the chain to answer
	id      string        // the sensor's id, in its readings
}

func main() {
	parse := func() (config, error) { return parseFlags(os.Args[1:], os.Getenv, os.Hostname, os.Stderr) }
	os.Exit(demoservice.Main("sensor", os.Stderr, parse, run))
}

// parseFlags reads the command line and the environment into a config.
func parseFlags(args []string, getenv func(string) string, hostname func() (string, error), stderr io.Writer) (config, error) {
	var cfg config
	cmd := demoservice.Command{
		Name:  "sensor",
		Usage: usage,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.proxy, "proxy", "", "base URL of the local proxy (default http://127.0.0.1:$PROXY_PORT)")
			fs.DurationVar(&cfg.timeout, "timeout", demoservice.DefaultTimeout, "how long the rest of the chain may take to answer a reading")
			fs.StringVar(&cfg.id, "id", "", "the sensor's id (default $PHYSARUM_INSTANCE_ID, or the host name)")
		},
		Check: func(*flag.FlagSet) error { return demoservice.CheckStageFlags(cfg.proxy, cfg.timeout) },
	}
	common, err := cmd.Parse(args, getenv, stderr)
	if err != nil {
		return config{}, err
	}
	cfg.listen = common.Listen
	if cfg.proxy, err = demoservice.ProxyBase(cfg.proxy, getenv); err != nil {
		return config{}, err
	}
	if cfg.id == "" {
		cfg.id = demoservice.InstanceID(getenv, hostname)
	}
	return cfg, nil
}

// run serves sensor on cfg.listen until ctx ends.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	s := newSensor(cfg.id, demoservice.NewStage(cfg.proxy, "aggregator", "/ingest", cfg.timeout))
	logger = logger.With("next", s.next.URL())
	return demoservice.ListenAndServe(ctx, cfg.listen, demoservice.NewServer(s.handler(), logger), logger)
}
