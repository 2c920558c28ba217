package control

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pmetrics "github.com/physarum-p2p/physarum/common/metrics"
)

// reconcileMetrics are the reconciler's Prometheus metrics; a nil one
// records nothing.
type reconcileMetrics struct {
	set      *pmetrics.Set
	leader   prometheus.Gauge
	changes  prometheus.Counter
	passes   *prometheus.CounterVec
	duration prometheus.Histogram
	actions  *prometheus.CounterVec
	desired  *prometheus.GaugeVec
	running  *prometheus.GaugeVec
	scaled   *prometheus.CounterVec
}

func newReconcileMetrics(reg prometheus.Registerer) *reconcileMetrics {
	if reg == nil {
		return nil
	}
	const ns, sub = "physarum", "reconciler"
	m := &reconcileMetrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "leader",
			Help: "1 while this registry-service leads the reconciler."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "leader_changes_total",
			Help: "Times this registry-service became or stopped being the reconciler's leader."}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "passes_total",
			Help: "Reconcile passes, by result (ok, error)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "pass_duration_seconds",
			Help:    "Time of one reconcile pass (reads and decisions; starts and stops run after it).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "actions_total",
			Help: "Reconciler actions, by kind (start, stop, connector_scale) and result (ok, failed)."}, []string{"kind", "result"}),
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "desired_instances",
			Help: "Desired pinned instances per service, every compute together (set by the leader)."}, []string{"service"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "running_instances",
			Help: "Running pinned instances per service (set by the leader)."}, []string{"service"}),
		scaled: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "autoscale_changes_total",
			Help: "Desired counts the autoscaler changed, per service."}, []string{"service"}),
	}
	m.set = pmetrics.Register(reg, m.leader, m.changes, m.passes, m.duration, m.actions, m.desired, m.running, m.scaled)
	return m
}

func (m *reconcileMetrics) autoscaled(service string) {
	if m != nil {
		m.scaled.WithLabelValues(service).Inc()
	}
}

func (m *reconcileMetrics) leading(on bool) {
	if m == nil {
		return
	}
	m.changes.Inc()
	if on {
		m.leader.Set(1)
		return
	}
	m.leader.Set(0)
	m.desired.Reset()
	m.running.Reset()
}

func (m *reconcileMetrics) pass(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.passes.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
}

func (m *reconcileMetrics) action(kind, result string) {
	if m != nil {
		m.actions.WithLabelValues(kind, result).Inc()
	}
}

// services sets the per-service gauges from a pass's snapshot.
func (m *reconcileMetrics) services(s *snapshot) {
	if m == nil {
		return
	}
	m.desired.Reset()
	m.running.Reset()
	for name := range s.services {
		m.desired.WithLabelValues(name).Set(0)
		m.running.WithLabelValues(name).Set(0)
	}
	for p, d := range s.desired {
		if _, ok := s.services[p.service]; ok {
			m.desired.WithLabelValues(p.service).Add(float64(d.Number))
		}
	}
	for p, insts := range s.pinned {
		for _, in := range insts {
			if in.State == "running" {
				m.running.WithLabelValues(p.service).Inc()
			}
		}
	}
}

func (m *reconcileMetrics) unregister() {
	if m != nil {
		m.set.Unregister()
	}
}
