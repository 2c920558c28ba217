// Command bench runs Physarum's whole-system benchmarks: it starts real
// networks of registry-service, allocator and proxy processes on loopback
// (as demos/demo does), measures what SPEC.md section 10 sets targets for,
// each beside its direct baseline measured in the same run, and writes
// results.json, results.md and PNG plots of the scaling curves into
// demos/bench/results. `make bench` runs it after the Go micro-benchmarks.
//
// Scenarios: proxy (added latency, throughput, memory of a proxy pair),
// ceiling (a raw PSK stream between two processes, and the proxy pair as a
// fraction of it), coldstart (first request to a service with no
// instance), images (Docker images between this machine's daemon and one
// the scenario starts, root needed: transfer rate through the network
// against docker save | docker load, cold start on a node that lacks the
// image, what layer deduplication would save), burst (20 instances at
// once), registry (get/add over libp2p against etcd direct, registry-cli,
// memory), allocator (deploy latency, 50 concurrent deploys, memory),
// visible (a new instance seen by another client), desired (scale 0 → 20
// through the HTTP API, a lost instance and a lost allocator until
// replaced), scale (10 to 100 allocators), reconciler (the reconciler's
// idle cost at 100 allocators and 200 services), events (the event stream
// and callbacks: latency, and 1,000 changes with 10 readers and 10
// callbacks), autoscale (a policy under a load step ×2 and ×4 through a
// client proxy: until the desired count moves, the new instances run and
// answer, failed requests and p99 meanwhile, and back down after the
// stabilization window), rollout (rolling updates of 3 and 6 instances
// under 200 req/s through a client proxy: failed requests, latency p50/p99
// against the steady load before, duration and steps, -max-parallel 1 and
// 3, a crashing version until reverted). -only runs some of them; -quick runs each with fewer
// samples, for development.
//
// Every process, container, image and directory the suite starts is
// removed at the end, also after Ctrl-C or a failure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `Usage: bench [OPTIONS]

Runs Physarum's whole-system benchmarks on this machine (loopback only) and
writes results.json, results.md and plots into -out. Build the binaries
first ('make build'); 'make bench' does both.

Scenarios (in the order they run): %s

OPTIONS:
`

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	// The context ends at the first Ctrl-C; later signals are swallowed
	// until the network is torn down, so that nothing is left running.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			fmt.Println("[bench] interrupted: stopping every process, container and directory this run started")
		case <-done:
		}
	}()
	code := runSuite(ctx, o)
	close(done)
	stop()
	os.Exit(code)
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), usage, strings.Join(scenarioNames(), ", "))
		fs.PrintDefaults()
	}
	self, _ := os.Executable()
	defBin := "bin"
	if self != "" && !strings.Contains(self, "go-build") { // not `go run`
		defBin = filepath.Dir(self)
	}
	fs.StringVar(&o.bin, "bin", defBin, "directory holding the built binaries")
	fs.StringVar(&o.services, "services", "demos/services", "directory holding the demo services' configs")
	fs.StringVar(&o.out, "out", "demos/bench/results", "directory the results are written to")
	fs.StringVar(&o.dir, "dir", "", "work directory for data and logs, kept afterwards (default: a temporary one, removed)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary work directory (logs) after the run")
	fs.StringVar(&o.logLevel, "log-level", "info", "-log-level of every daemon the suite starts (their logs are in the work directory)")
	only := fs.String("only", "", "run only these scenarios (comma-separated names)")
	fs.BoolVar(&o.quick, "quick", false, "fewer samples and smaller networks, for development (about 3 minutes)")
	fs.StringVar(&o.docker, "docker", "auto", "Docker scenarios: auto (when a daemon answers), on (required) or off")
	sizes := fs.String("scale-sizes", "", "network sizes of the scale scenario (default 10,25,50,100; quick: 10,25)")
	timing := fs.String("scale-timing", "default", "p2p timing of the scale scenario: default (production) or fast (PHYSARUM_FAST_TIMING=1)")
	fs.IntVar(&o.scaleBatch, "scale-batch", 25, "allocators started at once in the scale scenario")
	fs.DurationVar(&o.scaleIdle, "scale-idle", 0, "idle window over which CPU and traffic are measured (default 30s; quick: 5s)")
	soakFlag := fs.String("scale-soak", "", "idle soak at the largest network size: nothing may crash or leak (default 5m; quick: none)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	if *only != "" {
		for _, name := range strings.Split(*only, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(scenarioNames(), name) {
				return o, fmt.Errorf("-only %q: no such scenario (have %s)", name, strings.Join(scenarioNames(), ", "))
			}
			o.only = append(o.only, name)
		}
	}
	switch o.docker {
	case "auto", "on", "off":
	default:
		return o, fmt.Errorf("-docker %q: want auto, on or off", o.docker)
	}
	switch *timing {
	case "default":
	case "fast":
		o.scaleFast = true
	default:
		return o, fmt.Errorf("-scale-timing %q: want default or fast", *timing)
	}
	if *sizes == "" {
		*sizes = "10,25,50,100"
		if o.quick {
			*sizes = "10,25"
		}
	}
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 500 {
			return o, fmt.Errorf("-scale-sizes: %q is not a size from 1 to 500", f)
		}
		o.scaleSizes = append(o.scaleSizes, n)
	}
	if *soakFlag != "" {
		d, err := time.ParseDuration(*soakFlag)
		if err != nil || d < 0 {
			return o, fmt.Errorf("-scale-soak %q: want a duration such as 5m, or 0 for none", *soakFlag)
		}
		o.scaleSoak = d
	} else if !o.quick {
		o.scaleSoak = 5 * time.Minute
	}
	if o.scaleBatch < 1 {
		return o, fmt.Errorf("-scale-batch %d: want at least 1", o.scaleBatch)
	}
	if o.scaleIdle == 0 {
		o.scaleIdle = 30 * time.Second
		if o.quick {
			o.scaleIdle = 5 * time.Second
		}
	}
	for _, p := range []*string{&o.bin, &o.services, &o.out} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	o.command = strings.Join(append([]string{os.Args[0]}, args...), " ")
	return o, nil
}
