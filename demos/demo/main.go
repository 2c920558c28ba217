// Command demo runs a whole Physarum network on this machine and shows it
// at work: a registry, three allocators standing in for three sites at
// different distances, the demo services registered, and a client proxy
// through which it sends requests. It prints where each service was placed
// and how fast it answered, then keeps the network up (printing what to
// try) until Ctrl-C. With DEMO_ONESHOT=1 it stops after the report and exits
// 0 if every demo service answered. With DEMO_DAEMONS=separate (-daemons
// separate; root needed) each site runs on a Docker daemon of its own, and
// the report says which images travelled between them, and how fast. With
// DEMO_AUTOSCALE=1 (-autoscale) it then gives hello an autoscaling policy,
// ramps a load up through the client proxy while printing the counts and
// the autoscaler's decisions, and stops it to show the scale-down. With
// DEMO_ROLLOUT=1 (-rollout) it then pins hello at 3 instances under a load
// through the client proxy, rolls it to a new version and prints the
// rollout's progress and the failed-request count.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/physarum-p2p/physarum/registry"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

const usage = `Usage: demo [OPTIONS]

Starts a private Physarum network on this machine (loopback only), registers
the demo services, sends requests through a client proxy and reports what
happened. Make runs it as 'make demo'.

Environment:
  DEMO_ONESHOT=1     exit after the report (0 if every demo service answered)
  DEMO_RUNTIME=...   docker or process (default: docker when a daemon answers)
  DEMO_DAEMONS=...   shared or separate: the default of -daemons
  DEMO_AUTOSCALE=1   after the report, show hello autoscaling under a load
  DEMO_ROLLOUT=1     then show a rolling update of hello under a load
  DEMO_STRATEGY=...  rolling or blue-green: the update's strategy (default rolling)

OPTIONS:
`

func main() {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	self, _ := os.Executable()
	fs.StringVar(&o.bin, "bin", filepath.Dir(self), "directory holding the built binaries")
	fs.StringVar(&o.services, "services", "demos/services", "directory holding the demo services' configs")
	fs.StringVar(&o.dir, "dir", "", "work directory for data and logs (default: a new temporary one)")
	fs.IntVar(&o.port, "port", 8080, "client proxy port (a free one is used if it is taken)")
	fs.IntVar(&o.metricsBase, "metrics-port", 0, "serve metrics on fixed ports: registry on this one, site-a..c on the next three, the client proxy on the fifth (default: free ports)")
	fs.StringVar(&o.runtime, "runtime", os.Getenv("DEMO_RUNTIME"), "docker or process (default: docker when a daemon answers)")
	fs.StringVar(&o.daemons, "daemons", cmp.Or(os.Getenv("DEMO_DAEMONS"), daemonsShared), "Docker daemons: shared (every site uses this machine's) or separate (a daemon of its own per site, root needed: images travel between the sites)")
	oneshot := fs.Bool("oneshot", os.Getenv("DEMO_ONESHOT") == "1", "exit after the report (also DEMO_ONESHOT=1)")
	fs.BoolVar(&o.autoscale, "autoscale", os.Getenv("DEMO_AUTOSCALE") == "1", "after the report, give hello an autoscaling policy, ramp a load up through the client proxy and show it scaling out and back (about 2 minutes; also DEMO_AUTOSCALE=1)")
	fs.BoolVar(&o.rollout, "rollout", os.Getenv("DEMO_ROLLOUT") == "1", "after the report (and -autoscale), pin hello at 3 instances, put a load on it through the client proxy and roll it to a new version, printing the progress and the failed requests (about 1 minute; also DEMO_ROLLOUT=1)")
	fs.StringVar(&o.strategy, "strategy", cmp.Or(os.Getenv("DEMO_STRATEGY"), registry.StrategyRolling), "the -rollout update's strategy: rolling, or blue-green (the whole new set starts, every proxy switches at once, the old set stops 10 s later; also DEMO_STRATEGY)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	o.oneshot = *oneshot
	if o.strategy != registry.StrategyRolling && o.strategy != registry.StrategyBlueGreen {
		fmt.Fprintf(os.Stderr, "demo: -strategy %q: want rolling or blue-green\n", o.strategy)
		os.Exit(2)
	}
	if abs, err := filepath.Abs(o.bin); err == nil {
		o.bin = abs
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, o)
	stop()
	os.Exit(code)
}
