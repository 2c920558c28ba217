// Command register adds the demo services to the registry of the Compose
// network (demos/compose), one after the other, by running registry-cli
// add for each. It is the entrypoint of the one-shot "register" container:
// an image built FROM scratch has no shell to chain five commands with.
//
// The registry may still be starting when the container starts, so a
// failed add is tried again every second until -wait runs out. A usage
// error (registry-cli exit code 2, e.g. a bad config) is not retried.
//
// Usage:
//
//	register [-cli PATH] [-dir DIR] [-services NAME,...] [-wait DURATION] [-- REGISTRY-CLI FLAGS...]
//
// Each service NAME is registered from DIR/NAME.json. The arguments after
// -- go to registry-cli before its command, e.g. -ephemeral -psk-file
// /run/secrets/psk; P2P_BOOTSTRAPS and P2P_PSK pass through the
// environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// services are the demo services, in the order demos/demo registers them.
var services = []string{"hello", "calculator", "sensor", "aggregator", "analytics"}

// retryEvery is the pause between two attempts at one add.
var retryEvery = time.Second

func main() {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	cli := fs.String("cli", "/bin/registry-cli", "registry-cli binary")
	dir := fs.String("dir", "/services", "directory holding NAME.json for each service")
	list := fs.String("services", strings.Join(services, ","), "comma-separated services to register, in order")
	wait := fs.Duration("wait", 2*time.Minute, "keep trying each add for this long")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	// flag stops at "--" and drops it: what follows is registry-cli's.
	cliFlags := fs.Args()
	names := strings.Split(*list, ",")
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(*dir, name+".json")); err != nil {
			fmt.Fprintf(os.Stderr, "register: service %q: %v\n", name, err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, name := range names {
		if err := add(ctx, *cli, cliFlags, filepath.Join(*dir, name+".json"), name, *wait); err != nil {
			fmt.Fprintf(os.Stderr, "register: %s: %v\n", name, err)
			stop()
			os.Exit(1)
		}
	}
	fmt.Printf("registered %d services\n", len(names))
}

// add runs registry-cli add until it succeeds, fails with a usage error,
// or wait runs out.
func add(ctx context.Context, cli string, cliFlags []string, config, name string, wait time.Duration) error {
	args := append(slices.Clone(cliFlags), "add", config, name)
	deadline := time.Now().Add(wait)
	for attempt := 1; ; attempt++ {
		cmd := exec.CommandContext(ctx, cli, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := cmd.Run()
		if err == nil {
			return nil
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 2 {
			return fmt.Errorf("registry-cli add: usage error (not retried): %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry-cli add: still failing after %d attempts in %s: %w", attempt, wait, err)
		}
		fmt.Fprintf(os.Stderr, "register: %s: attempt %d failed (%v); trying again in %s\n", name, attempt, err, retryEvery)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retryEvery):
		}
	}
}
