package main

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/physarum-p2p/physarum/allocator/images"
	"github.com/physarum-p2p/physarum/common/daemon"
	"github.com/physarum-p2p/physarum/registry"
)

// imageNet is this node's part in moving images through the network: it
// fetches what the Docker runtime lacks, serves what the daemon holds,
// and announces and tidies the images of registered services. A node
// without Docker has none.
type imageNet struct {
	store   *images.DockerStore
	fetcher *images.Fetcher
	server  *images.Server
	keeper  *images.Keeper
	metrics *images.Metrics
	// changed signals that the images held changed (the node record
	// should say so).
	changed chan struct{}
}

// newImageNet prepares the fetcher over the daemon of $DOCKER_HOST (the
// one the Docker runtime uses); start begins serving and announcing.
func newImageNet(c *config, base *daemon.Base, reg *registry.Client, log *slog.Logger) (*imageNet, error) {
	store, err := images.NewDockerStore("")
	if err != nil {
		return nil, err
	}
	n := &imageNet{store: store, metrics: images.NewMetrics(base.Metrics), changed: make(chan struct{}, 1)}
	n.keeper = images.NewKeeper(store, serviceImages(reg), base.Node, images.KeeperOptions{
		Grace: c.imageGrace, StateFile: filepath.Join(c.dataDir, "images.json"),
		Changed: n.signal, Logger: log, Metrics: n.metrics,
	})
	n.fetcher = images.NewFetcher(base.Node.Host(), images.DHTHolders{Node: base.Node}, store, images.FetcherOptions{
		MaxSize: c.imageMaxSize, Pull: c.pull, Fetched: n.keeper.Add, Logger: log, Metrics: n.metrics,
	})
	n.server = images.Serve(base.Node.Host(), store, images.ServerOptions{
		MaxTransfers: c.imageTransfers, MaxSize: c.imageMaxSize, Loaded: n.keeper.Add, Logger: log, Metrics: n.metrics,
	})
	return n, nil
}

func (n *imageNet) signal() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// run keeps the images until ctx ends, telling republish when the images
// held change.
func (n *imageNet) run(ctx context.Context, republish func()) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.keeper.Run(ctx)
	}()
	defer func() { <-done }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.changed:
			republish()
		}
	}
}

// close stops serving and closes the daemon's client.
func (n *imageNet) close() {
	n.fetcher.Close()
	n.server.Close()
	n.metrics.Unregister()
	_ = n.store.Close()
}

// serviceImages lists the image IDs the registered services use.
func serviceImages(reg *registry.Client) images.ServiceImages {
	return func(ctx context.Context) (map[string]bool, error) {
		svcs, err := reg.ListServices(ctx)
		if err != nil {
			return nil, err
		}
		ids := make(map[string]bool, len(svcs))
		for _, info := range svcs {
			if images.ValidID(info.DockerHash) {
				ids[info.DockerHash] = true
			}
		}
		return ids, nil
	}
}
