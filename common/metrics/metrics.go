// Package metrics serves a daemon's Prometheus metrics. Each binary keeps
// its own metrics on a registry it passes to its components (never the
// global one); the endpoint serves that registry together with the default
// one, which holds the Go runtime, process and libp2p metrics.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Physarum metric.
const Namespace = "physarum"

// Server is a running /metrics endpoint.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr (host:port; port 0 picks one). It serves nothing until
// Serve. With pprof, it also serves Go's profiles under /debug/pprof/.
func Listen(addr string, reg prometheus.Gatherer, pprof bool) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	gatherers := prometheus.Gatherers{prometheus.DefaultGatherer}
	if reg != nil {
		gatherers = append(gatherers, reg)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	if pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	return &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the endpoint's metrics URL; an endpoint on every interface is
// shown at 127.0.0.1, where it can be tried from this machine.
func (s *Server) URL() string {
	addr := s.ln.Addr().(*net.TCPAddr)
	if addr.IP.IsUnspecified() {
		return fmt.Sprintf("http://127.0.0.1:%d/metrics (all interfaces)", addr.Port)
	}
	return "http://" + addr.String() + "/metrics"
}

// Serve serves until ctx ends, then shuts down within a second.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	})
	defer stop()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// Close stops the endpoint at once.
func (s *Server) Close() error { return s.srv.Close() }

// Set is a component's collectors, registered together and removed
// together when the component closes (its registry may outlive it: a
// test's, or a daemon's that restarts a part). A nil *Set does nothing.
type Set struct {
	reg prometheus.Registerer
	cs  []prometheus.Collector
}

// Register registers cs with reg and returns them as a Set. A collector
// already registered (a registry shared by several nodes in one process)
// keeps the first one's.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) *Set {
	s := &Set{reg: reg}
	for _, c := range cs {
		if err := reg.Register(c); err == nil {
			s.cs = append(s.cs, c)
		}
	}
	return s
}

// Unregister removes the Set's collectors from its registry.
func (s *Set) Unregister() {
	if s == nil {
		return
	}
	for _, c := range s.cs {
		s.reg.Unregister(c)
	}
}
