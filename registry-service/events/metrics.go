package events

import (
	"github.com/prometheus/client_golang/prometheus"

	pmetrics "github.com/physarum-p2p/physarum/common/metrics"
	"github.com/physarum-p2p/physarum/registry"
)

// metrics are the event streams' Prometheus metrics; a nil one records
// nothing.
type metrics struct {
	set      *pmetrics.Set
	events   *prometheus.CounterVec
	readers  prometheus.Gauge
	restarts prometheus.Counter
	gone     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	const ns, sub = pmetrics.Namespace, "events"
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "emitted_total",
			Help: "Events sent to stream readers, by topic (an event sent to three readers counts three times; heartbeats are not counted)."}, []string{"topic"}),
		readers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "stream_readers",
			Help: "Event streams being read now (HTTP /v1/events and the libp2p protocol together)."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "watch_restarts_total",
			Help: "Times a stream's etcd watch ended (a lost leader, a broken connection) and was opened again from the last revision delivered."}),
		gone: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "gone_total",
			Help: "Streams refused or ended because their index was compacted away (410 gone)."}),
	}
	for _, t := range []string{registry.TopicService, registry.TopicDesired, registry.TopicCompute,
		registry.TopicNode, registry.TopicInstance, registry.TopicLaunched, registry.TopicAutoscale, registry.TopicRollout} {
		m.events.WithLabelValues(t)
	}
	m.set = pmetrics.Register(reg, m.events, m.readers, m.restarts, m.gone)
	return m
}

func (m *metrics) emitted(topic string) {
	if m != nil {
		m.events.WithLabelValues(topic).Inc()
	}
}

func (m *metrics) reading(d float64) {
	if m != nil {
		m.readers.Add(d)
	}
}

func (m *metrics) restart() {
	if m != nil {
		m.restarts.Inc()
	}
}

func (m *metrics) goneInc() {
	if m != nil {
		m.gone.Inc()
	}
}

func (m *metrics) unregister() {
	if m != nil {
		m.set.Unregister()
	}
}
