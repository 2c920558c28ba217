package callbacks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pmetrics "github.com/physarum-p2p/physarum/common/metrics"
)

// metrics are the worker's Prometheus metrics; a nil one records
// nothing.
type metrics struct {
	set        *pmetrics.Set
	leader     prometheus.Gauge
	deliveries *prometheus.CounterVec
	latency    prometheus.Histogram
	backlog    *prometheus.GaugeVec
	disabled   prometheus.Counter
	skipped    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	const ns, sub = pmetrics.Namespace, "callbacks"
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "leader",
			Help: "1 while this registry-service leads the callbacks' delivery worker."}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "deliveries_total",
			Help: "Delivery attempts, by outcome: ok (a 2xx answer) or failed (anything else, a timeout, no connection)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "delivery_latency_seconds",
			Help:    "From an event's time (when the worker read it) to its receiver's 2xx, retries included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60, 600, 3600}}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "backlog",
			Help: "Events read for a callback and not yet delivered (held in memory, at most the worker's queue), per callback ID (set by the leader)."}, []string{"callback"}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "disabled_total",
			Help: "Callbacks disabled after failing for too long."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "compacted_total",
			Help: "Times a callback's cursor was found compacted away, its events up to the oldest kept skipped."}),
	}
	m.set = pmetrics.Register(reg, m.leader, m.deliveries, m.latency, m.backlog, m.disabled, m.skipped)
	return m
}

func (m *metrics) leading(on bool) {
	if m == nil {
		return
	}
	if on {
		m.leader.Set(1)
		return
	}
	m.leader.Set(0)
	m.backlog.Reset()
}

func (m *metrics) delivered(ok bool, latency time.Duration) {
	if m == nil {
		return
	}
	if !ok {
		m.deliveries.WithLabelValues("failed").Inc()
		return
	}
	m.deliveries.WithLabelValues("ok").Inc()
	m.latency.Observe(latency.Seconds())
}

func (m *metrics) setBacklog(id string, n int) {
	if m != nil {
		m.backlog.WithLabelValues(id).Set(float64(n))
	}
}

func (m *metrics) forget(id string) {
	if m != nil {
		m.backlog.DeleteLabelValues(id)
	}
}

func (m *metrics) disable() {
	if m != nil {
		m.disabled.Inc()
	}
}

func (m *metrics) compacted() {
	if m != nil {
		m.skipped.Inc()
	}
}

func (m *metrics) unregister() {
	if m != nil {
		m.set.Unregister()
	}
}
