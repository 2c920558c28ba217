package p2p

import (
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/prometheus/client_golang/prometheus"
)

// nodeMetrics are the node's Prometheus metrics. A nil *nodeMetrics
// records nothing, so callers need no checks.
type nodeMetrics struct {
	reg        prometheus.Registerer
	peers      prometheus.GaugeFunc
	rtt        prometheus.Histogram
	advertises *prometheus.CounterVec
	lookups    *prometheus.CounterVec
}

func newNodeMetrics(reg prometheus.Registerer, h host.Host) *nodeMetrics {
	m := &nodeMetrics{
		reg: reg,
		peers: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "physarum", Subsystem: "p2p", Name: "connected_peers",
			Help: "Peers this node has at least one connection to.",
		}, func() float64 { return float64(len(h.Network().Peers())) }),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "physarum", Subsystem: "p2p", Name: "rtt_seconds",
			Help:    "Round-trip times measured to peers with libp2p ping.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		advertises: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "p2p", Name: "advertisements_total",
			Help: "Rendezvous advertisements made, by result (ok, error).",
		}, []string{"result"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "p2p", Name: "lookups_total",
			Help: "Rendezvous lookups made, by result (ok, error).",
		}, []string{"result"}),
	}
	for _, c := range m.collectors() {
		// A registry shared by several nodes keeps the first node's metrics.
		_ = reg.Register(c)
	}
	return m
}

func (m *nodeMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.peers, m.rtt, m.advertises, m.lookups}
}

func (m *nodeMetrics) unregister() {
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}

func (m *nodeMetrics) advertised(result string) {
	if m != nil {
		m.advertises.WithLabelValues(result).Inc()
	}
}

func (m *nodeMetrics) lookedUp(result string) {
	if m != nil {
		m.lookups.WithLabelValues(result).Inc()
	}
}
