// Package daemon holds the start-up steps every Physarum daemon shares:
// turning the common flags into a running p2p node with its logger,
// metrics registry and endpoint, and printing where it can be reached.
package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/physarum-p2p/physarum/common/metrics"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/psk"
)

// Base is what a daemon has once its shared parts are up.
type Base struct {
	Log     *slog.Logger
	Node    *p2p.Node
	Metrics *prometheus.Registry
	// Endpoint is the metrics endpoint (nil when disabled).
	Endpoint *metrics.Server
}

// Start resolves the flags, starts the node and the metrics endpoint,
// writes the address file and prints the node's addresses to out. mutate,
// when set, adjusts the p2p config before the node starts.
func Start(flags *nodeflags.Flags, out, logw io.Writer, mutate func(*p2p.Config)) (*Base, error) {
	log, err := flags.Logger(logw)
	if err != nil {
		return nil, err
	}
	cfg, created, err := flags.Resolve(os.Getenv)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created a new identity", "keyfile", flags.KeyFile)
	}
	reg := prometheus.NewRegistry()
	cfg.Logger, cfg.Registerer = log, reg
	if mutate != nil {
		mutate(&cfg)
	}
	node, err := p2p.New(cfg)
	if err != nil {
		return nil, err
	}
	b := &Base{Log: log, Node: node, Metrics: reg}
	fmt.Fprintf(out, "peer ID %s\n", node.ID())
	// Not the key: a short digest of it, so that two nodes that cannot
	// talk can be told apart from a typo in the passphrase at a glance.
	fmt.Fprintf(out, "network %s (PSK fingerprint)\n", psk.Fingerprint(cfg.PSK))
	for _, a := range node.Addrs() {
		fmt.Fprintf(out, "listening on %s\n", a)
	}
	if flags.AddrFile != "" {
		if err := nodeflags.WriteAddrFile(flags.AddrFile, node.Addrs()); err != nil {
			node.Close()
			return nil, err
		}
	}
	if flags.PromListen != "" {
		ep, err := metrics.Listen(flags.PromListen, reg, flags.PProf)
		if err != nil {
			node.Close()
			return nil, err
		}
		b.Endpoint = ep
		fmt.Fprintf(out, "metrics on %s\n", ep.URL())
	}
	return b, nil
}

// Join waits until the node has reached a bootstrap peer. A daemon does
// not give up: it says once, on out, why it is waiting (the node keeps
// trying with backoff and logs each failed round), so that a site started
// before the others simply joins when they come up.
func (b *Base) Join(ctx context.Context, out io.Writer) error {
	err := b.Node.Bootstrapped(ctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	fmt.Fprintf(out, "waiting for a bootstrap peer: %v\n", err)
	if err := b.Node.Joined(ctx); err != nil {
		return err // ctx ended: the caller is shutting down
	}
	fmt.Fprintln(out, "joined the network")
	return nil
}

// Serve runs the metrics endpoint until ctx ends (without one, it just
// waits for ctx). It is one of the daemon's parts: an endpoint that fails
// returns its error, which stops the daemon.
func (b *Base) Serve(ctx context.Context) error {
	if b.Endpoint == nil {
		<-ctx.Done()
		return nil
	}
	return b.Endpoint.Serve(ctx)
}

// Close stops the metrics endpoint and the node.
func (b *Base) Close() {
	if b.Endpoint != nil {
		_ = b.Endpoint.Close()
	}
	_ = b.Node.Close()
}
