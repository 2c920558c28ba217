package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pmetrics "github.com/physarum-p2p/physarum/common/metrics"
)

type metrics struct {
	set      *pmetrics.Set
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	allocs   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "proxy", Name: "requests_total",
			Help: "Requests through this proxy, by service and status code (0: connection cut).",
		}, []string{"service", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "physarum", Subsystem: "proxy", Name: "request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response, by service.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"service"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "proxy", Name: "retries_total",
			Help: "Requests sent again to another instance after one could not be reached.",
		}, []string{"service"}),
		allocs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "proxy", Name: "allocations_total",
			Help: "New instances this proxy asked for, by service and outcome (ok, refused).",
		}, []string{"service", "outcome"}),
	}
	m.set = pmetrics.Register(reg, m.requests, m.latency, m.retries, m.allocs)
	return m
}

func (m *metrics) unregister() {
	if m != nil {
		m.set.Unregister()
	}
}

func (m *metrics) observe(service string, code int, start time.Time) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(service, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(service).Observe(time.Since(start).Seconds())
}

func (m *metrics) retry(service string) {
	if m != nil {
		m.retries.WithLabelValues(service).Inc()
	}
}
