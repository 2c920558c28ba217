package main

// This file is the same in every demo service: where to listen, how to
// serve and shut down, and how to answer JSON.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// shutdownTimeout bounds how long requests in flight may run on after
// SIGTERM or SIGINT before their connections are closed.
const shutdownTimeout = 10 * time.Second

// checkListen checks the -listen flag's value.
func checkListen(listen string) error {
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return fmt.Errorf("-listen %q: want host:port, e.g. 127.0.0.1:8080", listen)
	}
	return nil
}

// listenAddr is the address to listen on: listen (the -listen flag, see
// checkListen) when it is set, else 127.0.0.1:$SERVICE_PORT, where the
// instance's proxy sends requests.
func listenAddr(listen string, getenv func(string) string) (string, error) {
	if listen != "" {
		return listen, nil
	}
	port, err := portFromEnv(getenv, "SERVICE_PORT")
	if errors.Is(err, errNoEnv) {
		return "", fmt.Errorf("%w; run the service under a Physarum proxy, or pass -listen 127.0.0.1:8080", err)
	}
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// errNoEnv means an environment variable the service needs is not set.
var errNoEnv = errors.New("not set")

// portFromEnv reads a TCP port (1 to 65535) from the environment variable
// name.
func portFromEnv(getenv func(string) string, name string) (int, error) {
	v := getenv(name)
	if v == "" {
		return 0, fmt.Errorf("%s is %w", name, errNoEnv)
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("%s=%q is not a port number (1 to 65535)", name, v)
	}
	return port, nil
}

// newServer returns the http.Server every demo runs h with.
func newServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// serve answers on ln with srv until ctx ends, then shuts srv down: it
// stops accepting, lets requests in flight finish for up to
// shutdownTimeout, and closes what is left. It logs one line with the
// address when it starts. It returns nil after a clean shutdown.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, logger *slog.Logger) error {
	logger.Info("listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close() // cut the requests that outlived the deadline
		err = fmt.Errorf("shut down: requests still running after %s: %w", shutdownTimeout, err)
	}
	<-errc // http.ErrServerClosed, as soon as Shutdown began
	return err
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // a bug: every value answered here encodes
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal error: encode the answer"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// healthz answers ok while the service runs.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}
