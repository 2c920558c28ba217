package images

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pmetrics "github.com/physarum-p2p/physarum/common/metrics"
)

// Metrics are the image metrics of an allocator; a nil *Metrics records
// nothing.
type Metrics struct {
	set       *pmetrics.Set
	held      prometheus.Gauge
	transfers *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	seconds   *prometheus.HistogramVec
	shared    prometheus.Counter
	removed   prometheus.Counter
}

// NewMetrics registers the image metrics on reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "images_held",
			Help: "Images of registered services this node's Docker daemon holds (and announces).",
		}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "image_transfers_total",
			Help: "Image transfers by direction (in: fetched or taken, out: sent) and result (ok, or why not).",
		}, []string{"direction", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "image_transfer_bytes_total",
			Help: "Bytes of image streams moved, by direction.",
		}, []string{"direction"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "image_transfer_seconds",
			Help:    "Duration of image transfers that succeeded, by direction.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"direction"}),
		shared: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "image_fetches_shared_total",
			Help: "Needs for an image that joined a fetch already under way instead of starting one.",
		}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "images_removed_total",
			Help: "Images removed because no registered service used them for the grace period.",
		}),
	}
	m.set = pmetrics.Register(reg, m.held, m.transfers, m.bytes, m.seconds, m.shared, m.removed)
	return m
}

// Unregister removes the metrics from their registry.
func (m *Metrics) Unregister() {
	if m != nil {
		m.set.Unregister()
	}
}

func (m *Metrics) transfer(dir, result string, n int64, took time.Duration) {
	if m == nil {
		return
	}
	m.transfers.WithLabelValues(dir, result).Inc()
	m.bytes.WithLabelValues(dir).Add(float64(n))
	if result == "ok" {
		m.seconds.WithLabelValues(dir).Observe(took.Seconds())
	}
}

func (m *Metrics) setHeld(n int) {
	if m != nil {
		m.held.Set(float64(n))
	}
}

func (m *Metrics) joined() {
	if m != nil {
		m.shared.Inc()
	}
}

func (m *Metrics) removedOne() {
	if m != nil {
		m.removed.Inc()
	}
}
