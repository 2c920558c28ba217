// Command proxy is Physarum's sidecar and gateway. In client mode it
// serves http://127.0.0.1:PORT/<service>/... for local programs, reaching
// the nearest suitable instance over the private network; in service mode
// it also serves one instance of a service to the network; in instance
// mode (inside containers and process instances) it reads the allocator's
// environment contract and runs the service as its child.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(2)
	}
	// One P by default: see -procs. The measurements are in BENCHMARKS.md
	// ("Closing the distance").
	if cfg.procs > 0 && os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(cfg.procs)
	}
	// A proxy's live heap is a few MB, so a collection is cheap: half of
	// Go's default heap growth keeps its peak under 1 MiB bodies 1-3 MB
	// lower at no cost the benchmarks see (BENCHMARKS.md, "Closing the
	// distance"). GOGC in the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	// The child (instance mode) gets SIGTERM from us, not from the signal
	// context: run forwards it and waits for the child to exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, cfg, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		if code == 0 {
			code = 1
		}
	}
	stop()
	os.Exit(code)
}
