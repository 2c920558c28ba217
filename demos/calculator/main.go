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
	"log/slog"
	"os"

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

// command is calculator's command line: -listen alone.
var command = demoservice.Command{Name: "calculator", Usage: usage}

func main() {
	parse := func() (demoservice.Config, error) { return command.Parse(os.Args[1:], os.Getenv, os.Stderr) }
	os.Exit(demoservice.Main(command.Name, os.Stderr, parse, run))
}

// run serves calculator on cfg.Listen until ctx ends.
func run(ctx context.Context, cfg demoservice.Config, logger *slog.Logger) error {
	return demoservice.ListenAndServe(ctx, cfg.Listen, demoservice.NewServer(newCalculator(), logger), logger)
}
