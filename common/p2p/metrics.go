package p2p

import (
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/prometheus/client_golang/prometheus"

	pmetrics "github.com/physarum-p2p/physarum/common/metrics"
)

// nodeMetrics are the node's Prometheus metrics. A nil *nodeMetrics
// records nothing, so callers need no checks.
type nodeMetrics struct {
	set        *pmetrics.Set
	peers      prometheus.GaugeFunc
	rtt        prometheus.Histogram
	advertises *prometheus.CounterVec
	lookups    *prometheus.CounterVec
}

func newNodeMetrics(reg prometheus.Registerer, h host.Host) *nodeMetrics {
	m := &nodeMetrics{
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
	// A registry shared by several nodes keeps the first node's metrics.
	m.set = pmetrics.Register(reg, m.peers, m.rtt, m.advertises, m.lookups)
	return m
}

func (m *nodeMetrics) unregister() {
	if m != nil {
		m.set.Unregister()
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
