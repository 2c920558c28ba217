package registry

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reachability follows whether the client reaches a registry, from the
// outcome of its calls and watches, and says so once on each change: a
// daemon that cannot reach one goes on from what it knows (the data
// plane outlives the control plane), and its operator must be able to
// tell that it does, and since when.
type reachability struct {
	log *slog.Logger
	now func() time.Time

	mu        sync.Mutex
	reachable bool
	since     time.Time // of the current state
	// once is set at the first answer of a registry: from then on the
	// network is known to have one, and finding none is news at once.
	once bool
}

func newReachability(log *slog.Logger) *reachability {
	return &reachability{log: log, now: time.Now, reachable: true, since: time.Now()}
}

// observe takes the outcome of talking to a registry: an error another
// registry could have answered (no registry found, a transport failure,
// unavailable) means none was reached; success or a refusal means one
// was.
func (r *reachability) observe(err error) {
	reached := err == nil || !retryable(err) && !errors.Is(err, ErrNoRegistry)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.once = r.once || reached
	if reached == r.reachable {
		return
	}
	now := r.now()
	if reached {
		r.log.Info("registry reachable again; back on current state", "unreachable_for", now.Sub(r.since).Round(time.Millisecond))
	} else {
		r.log.Warn("registry unreachable; going on from the last known state", "err", err)
	}
	r.reachable, r.since = reached, now
}

// state reports whether a registry was reached last, and since when that
// has been so.
func (r *reachability) state() (reachable bool, since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reachable, r.since
}

// impatient reports whether finding a registry should be quick: one has
// answered before (the network has one: none found now means it is
// down), or none answers lately.
func (r *reachability) impatient() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.once || !r.reachable
}

// Reachable reports whether the client's last exchange with a registry
// succeeded (or was a refusal, which a registry sends), and since when
// that has been so. A daemon for which it is false runs on the last
// state it knew.
func (c *Client) Reachable() (reachable bool, since time.Time) { return c.reach.state() }

// RegisterMetrics registers, with names prefixed by namespace (e.g.
// "physarum_proxy"), whether the client reaches a registry
// (<namespace>_registry_reachable, 1 or 0) and since when it has not
// (<namespace>_registry_unreachable_since_seconds, a Unix time; 0 while
// it does).
func (c *Client) RegisterMetrics(reg prometheus.Registerer, namespace string) error {
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: namespace + "_registry_reachable",
		Help: "1 while the registry answers; 0 while the daemon runs on the last state it knew.",
	}, func() float64 {
		if ok, _ := c.Reachable(); ok {
			return 1
		}
		return 0
	})
	since := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: namespace + "_registry_unreachable_since_seconds",
		Help: "Unix time since which no registry has answered; 0 while one does.",
	}, func() float64 {
		if ok, t := c.Reachable(); !ok {
			return float64(t.UnixNano()) / 1e9
		}
		return 0
	})
	for _, m := range []prometheus.Collector{up, since} {
		if err := reg.Register(m); err != nil {
			return err
		}
	}
	return nil
}
