// Package gateway is the proxy's local HTTP side: it takes
// http://127.0.0.1:PORT/<service>/<rest>?<query>, asks the router for an
// instance, forwards the request to it over libp2p, and retries on another
// instance when that is safe. Errors it produces itself are JSON with the
// status a client can act on: 404 unknown service, 502 no reachable
// instance, 503 no instance could be started or the registry cannot be
// asked about a service it has not seen (with the reason), 504 the
// instance took too long.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/proxy/forward"
	"github.com/physarum-p2p/physarum/proxy/router"
)

// Config configures a Gateway.
type Config struct {
	// Attempts bounds how many instances one request is tried on
	// (default 3).
	Attempts int
	// PickTimeout bounds choosing an instance, on-demand allocation
	// included (default 20s).
	PickTimeout time.Duration
	// Status, when set, answers the proxy's local status path (instance
	// mode, for the allocator).
	Status http.Handler
	// Logger and Registerer receive the gateway's logs and metrics.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Picker chooses the instance each request goes to. *router.Router is
// one. Methods are called concurrently.
type Picker interface {
	// Pick chooses an instance of service, or fails with an error wrapping
	// one of router's sentinel errors (see Gateway for the statuses). The
	// gateway calls the Target's Done once the request is over, with true
	// when the instance failed it. Pick must return once ctx ends.
	Pick(ctx context.Context, service string) (*router.Target, error)
	// Known reports whether service is one Pick knows (it keeps request
	// paths naming no service out of the metrics).
	Known(service string) bool
}

// Forwarder sends a request to an instance's proxy and writes its answer,
// with the contract of forward.Transport.Forward: an error for which
// forward.Retryable holds means nothing was written and the request may
// go to another instance. *forward.Transport is one.
type Forwarder interface {
	Forward(w http.ResponseWriter, r *http.Request, p peer.ID, uri string) error
}

var (
	_ Picker    = (*router.Router)(nil)
	_ Forwarder = (*forward.Transport)(nil)
)

// Gateway is an http.Handler.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	router    Picker
	transport Forwarder
	metrics   *metrics
}

// New returns a Gateway forwarding through t to instances r picks.
func New(r Picker, t Forwarder, cfg Config) *Gateway {
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.PickTimeout <= 0 {
		cfg.PickTimeout = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Gateway{cfg: cfg, log: cfg.Logger, router: r, transport: t, metrics: newMetrics(cfg.Registerer)}
}

// Allocated counts an allocation the router asked for; give it to
// router.Config.OnAllocate.
func (g *Gateway) Allocated(service, outcome string) {
	if g.metrics != nil {
		g.metrics.allocs.WithLabelValues(service, outcome).Inc()
	}
}

// Close unregisters the gateway's metrics.
func (g *Gateway) Close() { g.metrics.unregister() }

// StatusPath is answered by Config.Status (the instance contract's).
const StatusPath = instenv.StatusPath

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == StatusPath && g.cfg.Status != nil {
		g.cfg.Status.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	service, uri, err := forward.SplitPath(r.URL)
	if err != nil {
		forward.WriteError(w, http.StatusNotFound, wire.CodeNotFound, "no service in the path: use /<service>/<path>")
		g.metrics.observe("", http.StatusNotFound, start)
		return
	}
	status := g.serve(w, r, service, uri)
	if status == http.StatusNotFound && g.unknown(service) {
		service = "unknown" // names from request paths must not grow the metrics without bound
	}
	g.metrics.observe(service, status, start)
}

// unknown reports whether the router does not know service.
func (g *Gateway) unknown(service string) bool { return !g.router.Known(service) }

// serve forwards one request and returns the status the client got (0
// when the connection was cut).
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, service, uri string) int {
	sw := &statusWriter{ResponseWriter: w}
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(r.Context(), g.cfg.PickTimeout)
		t, err := g.router.Pick(pctx, service)
		cancel()
		if err != nil {
			return g.pickError(sw, service, err)
		}
		err = g.transport.Forward(sw, r, t.Peer, uri)
		t.Done(err != nil && (forward.Retryable(err) || sw.status == 0 || sw.status >= 500))
		if err == nil || !forward.Retryable(err) {
			return sw.status
		}
		// Nothing was written and the request may be sent again: the
		// instance never got it, or died on an idempotent one.
		if attempt >= g.cfg.Attempts {
			forward.WriteError(sw, http.StatusBadGateway, wire.CodeUnavailable,
				"no instance of "+service+" could be reached after "+strconv.Itoa(attempt)+" attempts: "+err.Error())
			return sw.status
		}
		g.metrics.retry(service)
		g.log.Debug("instance unreachable; retrying on another", "service", service, "peer", t.Peer, "err", err)
	}
}

func (g *Gateway) pickError(w http.ResponseWriter, service string, err error) int {
	switch {
	case errors.Is(err, router.ErrUnknownService):
		forward.WriteError(w, http.StatusNotFound, wire.CodeNotFound, "unknown service "+strconv.Quote(service))
		return http.StatusNotFound
	case errors.Is(err, router.ErrNotServing):
		forward.WriteError(w, http.StatusNotFound, wire.CodeNotFound, err.Error())
		return http.StatusNotFound
	case errors.Is(err, router.ErrAllocation):
		forward.WriteError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, err.Error())
		return http.StatusServiceUnavailable
	case errors.Is(err, router.ErrClosed):
		forward.WriteError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "the proxy is shutting down")
		return http.StatusServiceUnavailable
	case errors.Is(err, router.ErrRegistry): // a deadline in its cause included
		forward.WriteError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, err.Error())
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		forward.WriteError(w, http.StatusServiceUnavailable, wire.CodeTimeout, "no instance of "+service+" in time: "+err.Error())
		return http.StatusServiceUnavailable
	}
	forward.WriteError(w, http.StatusBadGateway, wire.CodeUnavailable, err.Error())
	return http.StatusBadGateway
}

// statusWriter remembers the status written, keeping the optional
// interfaces Forward relies on reachable through Unwrap.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 || w.status == http.StatusSwitchingProtocols || code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush, Hijack and the rest.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
