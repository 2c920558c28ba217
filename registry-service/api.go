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

// apiServer is the registry-service's HTTP API: the Genisys-compatible
// door of the control operations.
type apiServer struct {
	ln  net.Listener
	srv *http.Server
}

// listenAPI binds -api-listen (nil when it is off), so that a port
// already taken fails the start with its reason.
func listenAPI(c *config, ctl registry.Controller, log *slog.Logger) (*apiServer, error) {
	if c.apiListen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", c.apiListen)
	if err != nil {
		return nil, fmt.Errorf("-api-listen: %w", err)
	}
	h := httpapi.New(ctl, httpapi.Options{Token: c.apiToken, PublicRead: c.apiPublicRead, Logger: log})
	return &apiServer{ln: ln, srv: &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}, nil
}

func (a *apiServer) url() string { return "http://" + a.ln.Addr().String() }

// serve answers until ctx ends, then lets requests in flight finish for a
// few seconds.
func (a *apiServer) serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("HTTP API: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	<-errc
	return nil
}
