package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry/httpapi"
)

// connector serves seed 001's connector protocol for this node alone
// (-connector-listen): an existing Genisys drives the node as one of its
// connectors, and the registry drives it as an external compute. Scale
// and status act on the compute named after this allocator; service
// definitions pass through to the registry.
type connector struct {
	ln  net.Listener
	srv *http.Server
}

// listenConnector binds -connector-listen ("" is off: nil, nil), so that
// a port that cannot be bound stops the allocator at start.
func listenConnector(addr string) (*connector, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-connector-listen %s: %w", addr, err)
	}
	return &connector{ln: ln}, nil
}

// url is where the connector answers; one on every interface is shown at
// 127.0.0.1, where it can be tried from this machine.
func (c *connector) url() string {
	addr := c.ln.Addr().(*net.TCPAddr)
	if addr.IP.IsUnspecified() {
		return fmt.Sprintf("http://127.0.0.1:%d (all interfaces)", addr.Port)
	}
	return "http://" + addr.String()
}

// serve answers over ctl, for the node named name, until ctx ends, then
// lets requests in flight finish for a few seconds.
func (c *connector) serve(ctx context.Context, ctl registry.Controller, name string, log *slog.Logger) error {
	log = log.With("component", "connector")
	c.srv = &http.Server{
		Handler:           httpapi.New(ctl, httpapi.Options{NodeScope: name, Logger: log}),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- c.srv.Serve(c.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("connector: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("connector: %w", err)
	}
	<-errc
	return nil
}

// close releases the connector's port (serve's shutdown has, if it ran).
func (c *connector) close() {
	if c != nil {
		_ = c.ln.Close()
	}
}
