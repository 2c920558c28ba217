// Command dashboard starts a private network on this machine and opens
// registry-service's dashboard in headless Chromium: to take the docs'
// screenshot (make screenshot) and to measure the page (make
// bench-dashboard): first paint, time to a complete page and bytes
// transferred at N nodes. It needs the binaries of make build in -bin.
//
//	go run ./demos/dashboard -screenshot docs/dashboard.png
//	go run ./demos/dashboard -measure 10,100
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory of the binaries (make build)")
	flag.StringVar(&o.screenshot, "screenshot", "", "write a 1280×800 PNG of the dashboard on a demo-like network here")
	measure := flag.String("measure", "", "comma-separated node counts to measure the page at (the bench's scale network: -cpus 0.1 -memory 256)")
	flag.IntVar(&o.runs, "runs", 5, "page loads per node count, each in a fresh browser")
	flag.Parse()
	if abs, err := filepath.Abs(o.bin); err == nil {
		o.bin = abs // the allocators run the services' commands from their own directories
	}
	for _, f := range strings.Split(*measure, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "dashboard: -measure %q: want node counts such as 10,100\n", *measure)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	if o.screenshot == "" && len(o.sizes) == 0 {
		fmt.Fprintln(os.Stderr, "dashboard: give -screenshot FILE, -measure 10,100, or both")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}
