// Command registry-cli adds, reads and deletes service definitions in the
// Physarum registry, and shows the network's registry members, nodes and
// instances.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/physarum-p2p/physarum/registry-cli/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
