package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pmetrics "github.com/physarum-p2p/physarum/common/metrics"
)

// metrics are the registry's Prometheus metrics; a nil *metrics records
// nothing.
type metrics struct {
	set      *pmetrics.Set
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	watches  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "registry", Name: "requests_total",
			Help: "Registry requests served, by operation and result code (\"ok\" on success).",
		}, []string{"op", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "registry", Name: "request_errors_total",
			Help: "Registry requests that failed, by operation.",
		}, []string{"op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "physarum", Subsystem: "registry", Name: "request_duration_seconds",
			Help:    "Time to serve a registry request, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"op"}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "physarum", Subsystem: "registry", Name: "watches",
			Help: "Instance watches open.",
		}),
	}
	m.set = pmetrics.Register(reg, m.requests, m.errors, m.latency, m.watches)
	return m
}

func (m *metrics) unregister() {
	if m != nil {
		m.set.Unregister()
	}
}

func (m *metrics) observe(op, code string, took time.Duration) {
	if m == nil {
		return
	}
	if code == "" {
		code = "ok"
	} else {
		m.errors.WithLabelValues(op).Inc()
	}
	m.requests.WithLabelValues(op, code).Inc()
	m.latency.WithLabelValues(op).Observe(took.Seconds())
}

func (m *metrics) watchOpened(delta float64) {
	if m != nil {
		m.watches.Add(delta)
	}
}
