package demoservice

// This file is what every demo service uses: where to listen, how to
// serve and shut down, and how to answer JSON.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ShutdownTimeout bounds how long requests in flight may run on after
// SIGTERM or SIGINT (the end of Serve's context) before their connections
// are closed.
const ShutdownTimeout = 10 * time.Second

// CheckListen checks the value of a service's -listen flag: it must be
// host:port.
func CheckListen(listen string) error {
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return fmt.Errorf("-listen %q: want host:port, e.g. 127.0.0.1:8080", listen)
	}
	return nil
}

// ListenAddr is the address a service listens on: listen (the -listen
// flag, see CheckListen) when it is set, else 127.0.0.1:$SERVICE_PORT,
// where the instance's proxy sends requests. getenv is os.Getenv, or a
// stand-in for tests. The error for a missing SERVICE_PORT wraps
// ErrNoEnv.
func ListenAddr(listen string, getenv func(string) string) (string, error) {
	if listen != "" {
		return listen, nil
	}
	port, err := PortFromEnv(getenv, "SERVICE_PORT")
	if errors.Is(err, ErrNoEnv) {
		return "", fmt.Errorf("%w; run the service under a Physarum proxy, or pass -listen 127.0.0.1:8080", err)
	}
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// ErrNoEnv means an environment variable the service needs is not set.
var ErrNoEnv = errors.New("not set")

// PortFromEnv reads a TCP port (1 to 65535) from the environment variable
// name, through getenv. When the variable is not set, the error wraps
// ErrNoEnv.
func PortFromEnv(getenv func(string) string, name string) (int, error) {
	v := getenv(name)
	if v == "" {
		return 0, fmt.Errorf("%s is %w", name, ErrNoEnv)
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("%s=%q is not a port number (1 to 65535)", name, v)
	}
	return port, nil
}

// NewServer returns the http.Server every demo runs h with: with header
// and idle timeouts, and its own errors logged to logger as warnings.
func NewServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// ListenAndServe listens on addr (TCP) and answers there with srv until
// ctx ends, as Serve does.
func ListenAndServe(ctx context.Context, addr string, srv *http.Server, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return Serve(ctx, srv, ln, logger)
}

// Serve answers on ln with srv until ctx ends, then shuts srv down: it
// stops accepting, lets requests in flight finish for up to
// ShutdownTimeout, and closes what is left. It logs one line with the
// address when it starts. It returns nil after a clean shutdown.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, logger *slog.Logger) error {
	logger.Info("listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close() // cut the requests that outlived the deadline
		err = fmt.Errorf("shut down: requests still running after %s: %w", ShutdownTimeout, err)
	}
	<-errc // http.ErrServerClosed, as soon as Shutdown began
	return err
}

// WriteJSON answers with status and v as JSON, on one line. A v that does
// not encode (a bug) gives a 500 with a JSON error instead.
func WriteJSON(w http.ResponseWriter, status int, v any) {
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

// DecodeJSON decodes the request body, one JSON value of at most limit
// bytes, into v. Its errors are fit to show the client; the one for an
// empty body says what is wanted (want, e.g. "a JSON reading such as
// {...}").
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any, limit int64, want string) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	err := dec.Decode(v)
	if err == nil && dec.Decode(&json.RawMessage{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("body larger than %d bytes", limit)
	case errors.Is(err, io.EOF):
		return errors.New("empty body; want " + want)
	case err != nil:
		return fmt.Errorf("malformed JSON: %w", err)
	}
	return nil
}

// Healthz is the handler of GET /healthz: it answers "ok" while the
// service runs.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}
