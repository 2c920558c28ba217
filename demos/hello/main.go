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
	"io"
	"log/slog"
	"os"

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

// config is what hello runs with.
type config struct {
	listen   string // address to listen on
	instance string // the instance named in answers
}

func main() {
	parse := func() (config, error) { return parseFlags(os.Args[1:], os.Getenv, os.Hostname, os.Stderr) }
	os.Exit(demoservice.Main("hello", os.Stderr, parse, run))
}

// parseFlags reads the command line and the environment into a config.
func parseFlags(args []string, getenv func(string) string, hostname func() (string, error), stderr io.Writer) (config, error) {
	common, err := demoservice.Command{Name: "hello", Usage: usage}.Parse(args, getenv, stderr)
	if err != nil {
		return config{}, err
	}
	return config{listen: common.Listen, instance: demoservice.InstanceID(getenv, hostname)}, nil
}

// run serves hello on cfg.listen until ctx ends.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	h := newHello(cfg.instance)
	srv := demoservice.NewServer(h, logger)
	srv.RegisterOnShutdown(h.shutdown)
	return demoservice.ListenAndServe(ctx, cfg.listen, srv, logger)
}
