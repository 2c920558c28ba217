package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sync/errgroup"

	"github.com/physarum-p2p/physarum/common/backoff"
	"github.com/physarum-p2p/physarum/common/daemon"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/callbacks"
	"github.com/physarum-p2p/physarum/registry-service/cluster"
	"github.com/physarum-p2p/physarum/registry-service/control"
	"github.com/physarum-p2p/physarum/registry-service/server"
	"github.com/physarum-p2p/physarum/registry-service/ui"
	"github.com/physarum-p2p/physarum/registry/httpapi"
)

func run(ctx context.Context, c *config, stdout, stderr io.Writer) error {
	base, err := daemon.Start(c.node, stdout, stderr, func(cfg *p2p.Config) {
		if c.local {
			cfg.Bootstraps = nil // -local overrides -bootstrap and the environment
		}
		// Every node of the network talks to a registry: it is a hub.
		cfg.ConnLow, cfg.ConnHigh = 512, 2048
	})
	if err != nil {
		return err
	}
	defer base.Close()
	log := base.Log
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("create -data-dir: %w", err)
	}

	ccfg := cluster.Config{
		Name: base.Node.ID().String(), DataDir: c.dataDir, IP: c.etcdIP,
		ClientPort: c.clientPort, PeerPort: c.peerPort, PSK: base.Node.PSK(),
		UnsafeNoFsync: c.unsafeNoFsync, Logger: log,
	}
	if err := ccfg.Validate(); err != nil {
		return err
	}
	member, err := startMember(ctx, c, ccfg, base.Node, stdout)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped (SIGTERM, Ctrl-C) before it was ready
		}
		return err
	}
	defer member.Close()

	srv := server.New(base.Node.Host(), member, server.Config{
		Writers: c.writers, VoterCap: c.voters, MaxScale: c.maxScale, Logger: log, Registerer: base.Metrics,
	})
	defer srv.Close()
	api, err := httpapi.Listen(c.apiListen, "-api-listen")
	if err != nil {
		return err
	}
	defer api.Close()
	base.Node.Advertise(registry.Rendezvous)
	// A joiner is a learner until it has caught up: say member, not voter.
	role := "etcd member"
	if member.IsClient() {
		role = registry.RoleClient
	}
	fmt.Fprintf(stdout, "registry ready (%s)\n", role)
	log.Info("registry ready", "role", role, "data_dir", c.dataDir)

	// The daemon's parts, supervised as one: the first to fail stops the
	// rest, and its error is the daemon's.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return base.Serve(gctx) })
	if api != nil {
		fmt.Fprintf(stdout, "HTTP API on %s (Genisys-compatible /compute and /service, /instances, /callbacks, /v1/events); dashboard on %s\n", api.URL(), dashboardURL(api.URL()))
		h := ui.Mount(httpapi.New(srv.Control(), httpapi.Options{Token: c.apiToken, PublicRead: c.apiPublicRead, Logger: log}))
		g.Go(func() error { return api.Serve(gctx, h, log) })
	}
	if !member.IsClient() {
		// Every voter campaigns; the elected one reconciles.
		rec := control.NewReconciler(srv.Control(), member.Client(), base.Node.Host(), control.ReconcilerConfig{
			Name: base.Node.ID().String(), PrometheusURL: c.prometheusURL, Logger: log, Registerer: base.Metrics,
		})
		g.Go(func() error { rec.Run(gctx); return nil })
		// And for the callbacks' delivery, on an election of its own.
		cbw := callbacks.New(member.Client(), callbacks.Config{
			Name: base.Node.ID().String(), Logger: log, Registerer: base.Metrics,
			Fast: os.Getenv(nodeflags.EnvFastTiming) == "1",
		})
		g.Go(func() error { cbw.Run(gctx); return nil })
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case err := <-member.Err():
			return fmt.Errorf("etcd stopped: %w", err)
		}
	})
	err = g.Wait()
	log.Info("shutting down")
	return err
}

// dashboardURL is the dashboard's address beside the API's URL (which may
// end in a note such as " (all interfaces)").
func dashboardURL(apiURL string) string {
	base, _, _ := strings.Cut(apiURL, " ")
	return base + ui.Prefix
}

// startMember restarts from the data dir, starts a new cluster, or joins
// one found through the network.
func startMember(ctx context.Context, c *config, cfg cluster.Config, n *p2p.Node, stdout io.Writer) (*cluster.Member, error) {
	switch {
	case cluster.HasData(c.dataDir):
		fmt.Fprintf(stdout, "restarting etcd member from %s\n", c.dataDir)
		return cluster.Restart(ctx, cfg)
	case c.newCluster:
		if err := noRegistryYet(ctx, n, len(n.Config().Bootstraps) > 0); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "starting a new registry cluster (etcd on %s)\n", cfg.ClientURLs()[0])
		return cluster.StartNew(ctx, cfg)
	}
	fmt.Fprintln(stdout, "joining the registry cluster")
	return join(ctx, c, cfg, n)
}

// join asks registries found in the network to admit this member, retrying
// while one is busy admitting another, until -join-timeout.
func join(parent context.Context, c *config, cfg cluster.Config, n *p2p.Node) (*cluster.Member, error) {
	ctx, cancel := context.WithTimeout(parent, c.joinTimeout)
	defer cancel()
	if err := n.Bootstrapped(ctx); err != nil {
		n.Logger().Warn("waiting for a bootstrap peer", "err", err)
		if err := n.Joined(ctx); err != nil {
			if parent.Err() != nil {
				return nil, parent.Err() // stopped while waiting
			}
			return nil, fmt.Errorf("join the registry within %s: no bootstrap reachable; check the PSK and address", c.joinTimeout)
		}
	}
	disc := n.Discover(registry.Rendezvous)
	defer disc.Close()
	req := registry.JoinRequest{PeerURLs: cfg.PeerURLs(), ClientURLs: cfg.ClientURLs()}
	var lastErr error = registry.ErrNoRegistry
	retry := backoff.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		for _, p := range joinCandidates(n, disc) {
			var resp registry.JoinResponse
			err := wire.Call(ctx, n.Host(), p, registry.JoinProtocol, req, &resp, wire.CallOptions{Timeout: 30 * time.Second})
			if err != nil {
				lastErr = err
				n.Logger().Info("join attempt failed; retrying", "registry", p, "err", err)
				continue
			}
			if resp.Client {
				return cluster.Connect(ctx, cfg, resp.ClientURLs)
			}
			return cluster.Join(ctx, cfg, resp.InitialCluster, resp.ClientURLs)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("join the registry within %s: %w", c.joinTimeout, lastErr)
		case <-time.After(retry.Next()):
		}
	}
}

func joinCandidates(n *p2p.Node, disc *p2p.Discovery) []peer.ID {
	seen := map[peer.ID]bool{}
	var out []peer.ID
	for _, p := range n.Host().Network().Peers() {
		if ok, _ := n.Host().Peerstore().SupportsProtocols(p, registry.JoinProtocol); len(ok) > 0 && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if disc == nil {
		return out
	}
	for _, p := range disc.Peers() {
		if !seen[p.ID] {
			seen[p.ID] = true
			out = append(out, p.ID)
		}
	}
	return out
}

// noRegistryYet refuses -new-etcd-cluster in a network that already has a
// registry: a second cluster would silently split the network's memory.
// With no bootstrap peers, this node starts the network and there is
// nothing to look for.
func noRegistryYet(ctx context.Context, n *p2p.Node, hasBootstraps bool) error {
	if !hasBootstraps {
		return nil // this node starts the network: nobody to ask
	}
	// Told of peers: reach them first, or the check proves nothing.
	if n.Bootstrapped(ctx) != nil {
		n.Logger().Warn("waiting for a bootstrap peer before starting a new registry cluster")
		if err := n.Joined(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	found := joinCandidates(n, nil)
	if len(found) == 0 {
		if infos, err := n.FindPeers(ctx, registry.Rendezvous); err == nil {
			for _, ai := range infos {
				found = append(found, ai.ID)
			}
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("-new-etcd-cluster: a registry already runs in this network (%s); start without -new-etcd-cluster to join it, or with -data-dir of an existing member to restart it", p2p.ShortID(found[0]))
	}
	return nil
}
