package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/sync/errgroup"

	"github.com/physarum-p2p/physarum/common/daemon"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/proxy/forward"
	"github.com/physarum-p2p/physarum/proxy/gateway"
	"github.com/physarum-p2p/physarum/proxy/router"
	"github.com/physarum-p2p/physarum/registry"
)

// run serves until ctx ends or, in instance mode, the child exits; it
// returns the exit code (the child's, in instance mode).
func run(ctx context.Context, c *config, stdout, stderr io.Writer) (int, error) {
	if c.metricsPort != 0 {
		c.node.PromListen = ":" + strconv.Itoa(c.metricsPort)
	}
	base, err := daemon.Start(c.node, stdout, stderr, func(cfg *p2p.Config) {
		if c.key != nil {
			cfg.Identity = c.key
		}
		if c.instance {
			cfg.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/" + c.p2pIP + "/tcp/" + strconv.Itoa(c.p2pPort))}
		}
	})
	if err != nil {
		return 1, err
	}
	defer base.Close()
	log := base.Log
	if err := base.Join(ctx, stdout); err != nil {
		if ctx.Err() != nil {
			return 0, nil // stopped while waiting for the network
		}
		return 1, err
	}
	reg := registry.NewClient(base.Node, registry.Options{Logger: log})
	defer reg.Close()
	if err := reg.RegisterMetrics(base.Metrics, "physarum_proxy"); err != nil {
		return 1, err
	}
	var gw *gateway.Gateway // set below; the router reports allocations to it
	rt := router.New(base.Node, reg, router.Config{AllocTimeout: c.allocTimeout, Logger: log,
		OnAllocate: func(service, outcome string) { gw.Allocated(service, outcome) }})
	defer rt.Close()

	var srv *forward.Server
	var status http.Handler
	if c.service != "" {
		srv, err = forward.Serve(base.Node.Host(), c.address, forward.ServerOptions{Logger: log.With("service", c.service)})
		if err != nil {
			return 1, err
		}
		defer srv.Close()
		base.Node.Advertise(router.ServiceRendezvous(c.service))
		status = statusHandler(srv, c.address)
		fmt.Fprintf(stdout, "serving %s (at %s) to the network\n", c.service, c.address)
	} else if c.instance {
		status = statusHandler(nil, "")
	}
	gw = gateway.New(rt, forward.NewTransport(base.Node.Host(), forward.TransportOptions{}), gateway.Config{
		Attempts: c.attempts, PickTimeout: c.allocTimeout + 5*time.Second, Status: status,
		Logger: log, Registerer: base.Metrics,
	})
	defer gw.Close()
	ln, err := net.Listen("tcp", net.JoinHostPort(c.listenIP, strconv.Itoa(c.port)))
	if err != nil {
		return 1, fmt.Errorf("listen on local port: %w", err)
	}
	httpSrv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "proxy ready: http://%s/<service>/<path>\n", ln.Addr())

	var ch *child
	if len(c.child) > 0 {
		if ch, err = startChild(c.child, stdout, stderr); err != nil {
			ln.Close()
			return 1, err
		}
		defer ch.stop(10 * time.Second)
	}
	// The proxy's parts, supervised as one: the first to end (a failure,
	// or the child's exit in instance mode) stops the rest.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return base.Serve(gctx) })
	g.Go(func() error {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("local HTTP server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdown(httpSrv)
		return nil
	})
	if ch != nil {
		g.Go(func() error {
			select {
			case <-gctx.Done():
			case <-ch.exited:
				log.Info("service exited; proxy exits with it", "code", ch.code, "err", ch.err)
				return errChildExited
			}
			return nil
		})
	}
	err = g.Wait()
	switch {
	case errors.Is(err, errChildExited):
		return ch.code, nil
	case err != nil:
		return 1, err
	}
	log.Info("shutting down")
	return 0, nil
}

// errChildExited ends the proxy's group when its child exits; the proxy
// then exits with the child's code.
var errChildExited = errors.New("service exited")

func shutdown(s *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)
}
