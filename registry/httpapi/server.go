package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is a daemon's HTTP door (registry-service's -api-listen, an
// allocator's -connector-listen): its port is bound at start, so that one
// that cannot be had stops the daemon with its reason, and it serves until
// the daemon stops, giving requests in flight a few seconds.
type Server struct {
	flag string
	ln   net.Listener
}

// Listen binds addr; "" is off (nil, nil). flag names the address in
// errors.
func Listen(addr, flag string) (*Server, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	return &Server{flag: flag, ln: ln}, nil
}

// URL is where it answers; one on every interface is shown at 127.0.0.1,
// where it can be tried from this machine.
func (s *Server) URL() string {
	addr := s.ln.Addr().(*net.TCPAddr)
	if addr.IP.IsUnspecified() {
		return fmt.Sprintf("http://127.0.0.1:%d (all interfaces)", addr.Port)
	}
	return "http://" + addr.String()
}

// Serve answers with h until ctx ends, then lets requests in flight finish
// for up to 5 s.
func (s *Server) Serve(ctx context.Context, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", s.flag, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", s.flag, err)
	}
	<-errc
	return nil
}

// Close releases the port (Serve's shutdown has, if it ran).
func (s *Server) Close() {
	if s != nil {
		_ = s.ln.Close()
	}
}
