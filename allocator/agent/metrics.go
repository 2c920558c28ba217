package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	pmetrics "github.com/physarum-p2p/physarum/common/metrics"

	"github.com/physarum-p2p/physarum/registry"
)

// metrics are the allocator's Prometheus metrics; a nil *metrics records
// nothing.
type metrics struct {
	set        *pmetrics.Set
	deploys    *prometheus.CounterVec
	refusals   *prometheus.CounterVec
	instances  *prometheus.GaugeVec
	freeCPU    prometheus.Gauge
	freeMemory prometheus.Gauge
	runtimes   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "deploys_total",
			Help: "Deploys by outcome: requested, admitted, started, failed, culled, adopted.",
		}, []string{"event"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "deploys_refused_total",
			Help: "Deploys refused, by reason.",
		}, []string{"reason"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "instances",
			Help: "Instances on this node, by state.",
		}, []string{"state"}),
		freeCPU: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "free_cpu_millicores",
			Help: "CPU not promised to instances.",
		}),
		freeMemory: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "free_memory_mebibytes",
			Help: "Memory not promised to instances.",
		}),
		runtimes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "physarum", Subsystem: "allocator", Name: "runtime_up",
			Help: "1 when the runtime can start instances, 0 when its backend is unreachable.",
		}, []string{"runtime"}),
	}
	m.set = pmetrics.Register(reg, m.deploys, m.refusals, m.instances, m.freeCPU, m.freeMemory, m.runtimes)
	return m
}

func (m *metrics) unregister() {
	if m != nil {
		m.set.Unregister()
	}
}

func (m *metrics) event(e string) {
	if m != nil {
		m.deploys.WithLabelValues(e).Inc()
	}
}

func (m *metrics) requested() { m.event("requested") }
func (m *metrics) admitted()  { m.event("admitted") }
func (m *metrics) started()   { m.event("started") }
func (m *metrics) failed()    { m.event("failed") }
func (m *metrics) culled()    { m.event("culled") }
func (m *metrics) adopted()   { m.event("adopted") }

func (m *metrics) refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) runtimeUp(name string, up bool) {
	if m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.runtimes.WithLabelValues(name).Set(v)
	}
}

// observeResources refreshes the gauges from the agent's state.
func (m *metrics) observeResources(a *Agent) {
	if m == nil {
		return
	}
	cpu, mem := a.res.free()
	m.freeCPU.Set(float64(cpu))
	m.freeMemory.Set(float64(mem))
	counts := map[string]int{}
	for _, in := range a.Instances() {
		counts[in.State]++
	}
	for _, s := range []string{registry.StatePending, registry.StateStarting, registry.StateRunning,
		registry.StateStopping, registry.StateFailed} {
		m.instances.WithLabelValues(s).Set(float64(counts[s]))
	}
	for _, name := range a.order {
		m.runtimeUp(name, a.degradedReason(name) == "")
	}
}
