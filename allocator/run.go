package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/allocator/images"
	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/allocator/runtime/docker"
	"github.com/physarum-p2p/physarum/allocator/runtime/process"
	"github.com/physarum-p2p/physarum/common/daemon"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry/httpapi"
)

func run(ctx context.Context, c *config, stdout, stderr io.Writer) error {
	base, err := daemon.Start(c.node, stdout, stderr, nil)
	if err != nil {
		return err
	}
	defer base.Close()
	log := base.Log
	conn, err := httpapi.Listen(c.connectorListen, "-connector-listen")
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := base.Join(ctx, stdout); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the network
		}
		return err
	}
	reg := registry.NewClient(base.Node, registry.Options{Logger: log})
	defer reg.Close()
	if err := reg.RegisterMetrics(base.Metrics, "physarum_allocator"); err != nil {
		return err
	}
	// The Docker runtime fetches missing images through the image
	// network, made once the runtime is known to work (before any start).
	var inet *imageNet
	fetch := func(ctx context.Context, image string) error { return inet.fetcher.Fetch(ctx, image) }
	rts, err := openRuntimes(ctx, c, base.Node.ID().String(), log, stdout, fetch)
	if err != nil {
		return err
	}
	defer func() {
		for _, rt := range rts {
			_ = rt.Close()
		}
	}()
	var heldImages func() []string
	if slices.ContainsFunc(rts, func(rt runtime.Runtime) bool { return rt.Name() == docker.Name }) {
		if inet, err = newImageNet(c, base, reg, log); err != nil {
			return err
		}
		defer inet.close()
		heldImages = inet.keeper.Held
		fmt.Fprintf(stdout, "images: serving %s to peers; fetching missing images from the nearest holder (pull from outside registries: %s)\n", images.Protocol, c.pull)
	}
	if c.proxyPath == "" {
		c.proxyPath = findProxy()
	}
	a, err := agent.New(ctx, base.Node, reg, rts, agent.Config{
		Name: c.name, CPU: c.cpuMillis, Memory: c.memoryMiB, Labels: c.labels, ProxyPath: c.proxyPath,
		IdleTimeout: c.idleTimeout, LeaseTTL: c.leaseTTL, StartTimeout: c.startTimeout, DrainGrace: c.drainGrace,
		MaxRestarts: c.maxRestarts, KeepInstances: c.keepInstances, Images: heldImages, Logger: log, Registerer: base.Metrics,
	})
	if err != nil {
		return err
	}
	if conn != nil {
		fmt.Fprintf(stdout, "connector listening on %s (seed 001's protocol for %s alone)\n", conn.URL(), a.Name())
	}
	fmt.Fprintf(stdout, "allocator ready: name %s, %d millicores, %d MiB, runtimes %v, %d instances adopted\n",
		a.Name(), c.cpuMillis, c.memoryMiB, a.Runtimes(), len(a.Instances()))
	// The daemon's parts, supervised as one: the first to fail stops the
	// rest, and its error is the daemon's.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return base.Serve(gctx) })
	if inet != nil {
		g.Go(func() error { return inet.run(gctx, a.Republish) })
	}
	if conn != nil {
		// Seed 001's connector protocol for this node alone: scale and
		// status act on the compute named after this allocator.
		h := httpapi.New(reg, httpapi.Options{NodeScope: a.Name(), Logger: log.With("component", "connector")})
		g.Go(func() error { return conn.Serve(gctx, h, log.With("component", "connector")) })
	}
	g.Go(func() error {
		<-gctx.Done()
		if c.keepInstances {
			fmt.Fprintln(stdout, "shutting down; instances keep running (-keep-instances)")
		} else {
			fmt.Fprintln(stdout, "shutting down: stopping instances")
		}
		a.Close()
		return nil
	})
	return g.Wait()
}

// openRuntimes opens what -runtime asks for. auto offers Docker when a
// daemon answers, and processes always.
func openRuntimes(ctx context.Context, c *config, node string, log *slog.Logger, stdout io.Writer, fetch func(context.Context, string) error) ([]runtime.Runtime, error) {
	var rts []runtime.Runtime
	if c.runtime != registry.RuntimeProcess {
		d, err := docker.New(ctx, docker.Options{Node: node, ConnectTimeout: 2 * time.Second, Fetch: fetch, Logger: log})
		switch {
		case err == nil:
			rts = append(rts, d)
		case c.runtime == registry.RuntimeDocker:
			return nil, err
		case errors.Is(err, docker.ErrUnavailable):
			fmt.Fprintf(stdout, "no Docker daemon answers; running instances as processes (%v)\n", err)
		default:
			return nil, err
		}
	}
	if c.runtime != registry.RuntimeDocker {
		p, err := process.New(process.Options{Dir: filepath.Join(c.dataDir, "instances"), Logger: log})
		if err != nil {
			for _, rt := range rts {
				_ = rt.Close()
			}
			return nil, err
		}
		rts = append(rts, p)
	}
	var names []string
	for _, rt := range rts {
		names = append(names, rt.Name())
	}
	fmt.Fprintf(stdout, "runtimes: %v\n", names)
	return rts, nil
}

// findProxy looks for the proxy binary beside this executable (make build
// puts them together), then on PATH.
func findProxy() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "proxy")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("proxy"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}
