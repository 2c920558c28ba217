package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// runVisible times how soon another client sees a new instance: a second
// client node, in this process but with its own libp2p host, holds a
// registry watch on the service (what every client proxy does to route);
// the first asks an allocator for instances one at a time.
func runVisible(ctx context.Context, r *run) error {
	n, err := r.s.newNetwork(r, "visible", true)
	if err != nil {
		return err
	}
	defer n.close()
	r.sc.Setup = "1 registry-service, 1 allocator (process runtime, 2 CPUs); a deploying client node and a watching client " +
		"node (registry.Client.WatchInstances, as client proxies use) in this process; " + n.timing() + "."
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	allocs, err := n.startAllocators(ctx, allocSpec{name: "alloc-1", runtime: "process", cpus: "2", memory: 2048})
	if err != nil {
		return err
	}
	if err := n.addProcessService(ctx, "hello", 0, 0); err != nil {
		return err
	}
	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	res, err := measureVisible(ctx, n, c, "hello", allocs, r.pick(30, 10))
	if err != nil {
		return err
	}
	res.figures(r, 0)
	return nil
}

// visibleResult holds the times of instances deployed one at a time.
type visibleResult struct {
	lag     dist // watch saw it running, after its allocator logged it running
	noLog   int  // instances whose allocator's log line was not found
	afterRs dist // watch saw it running, after the deploy answer (0 when before)
	fromRq  dist // watch saw it running, after the deploy request
	deploy  dist // deploy request to answer
	early   int  // seen before the answer arrived
}

// measureVisible deploys count instances of service, one at a time on
// the allocators in turn, and times when a separate watching client node
// sees each running.
func measureVisible(ctx context.Context, n *network, c *client, service string, allocs []*allocator, count int) (*visibleResult, error) {
	watcher, err := newClient(ctx, n.pass, n.regAddr, n.fast)
	if err != nil {
		return nil, err
	}
	defer watcher.close()
	w := watcher.reg.WatchInstances(service)
	defer w.Close()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = w.Wait(wctx)
	cancel()
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	seen := map[string]time.Time{}
	wake := make(chan struct{}, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ch := w.Changed()
			now := time.Now()
			mu.Lock()
			for _, in := range w.Instances() {
				if _, ok := seen[in.ID]; !ok && in.State == registry.StateRunning {
					seen[in.ID] = now
				}
			}
			mu.Unlock()
			select {
			case wake <- struct{}{}:
			default:
			}
			select {
			case <-ch:
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()

	res := &visibleResult{}
	for i := range count {
		a := allocs[i%len(allocs)]
		in, t0, t1, err := c.deployTo(ctx, a, service)
		if err != nil {
			return nil, fmt.Errorf("deploy on %s: %w", a.name, err)
		}
		deadline := time.After(10 * time.Second)
		var at time.Time
		for at.IsZero() {
			mu.Lock()
			at = seen[in.ID]
			mu.Unlock()
			if !at.IsZero() {
				break
			}
			select {
			case <-wake:
			case <-deadline:
				return nil, fmt.Errorf("the watching client did not see instance %s within 10 s of its deploy answer", in.ID)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if logged, ok := runningLogged(a, in.ID); ok {
			res.lag = append(res.lag, at.Sub(logged))
		} else {
			res.noLog++
		}
		afterRs := at.Sub(t1)
		if afterRs < 0 {
			res.early++
			afterRs = 0
		}
		res.afterRs = append(res.afterRs, afterRs)
		res.fromRq = append(res.fromRq, at.Sub(t0))
		res.deploy = append(res.deploy, t1.Sub(t0))
		if err := c.stopInstance(ctx, in); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// figures records the result; size > 0 tags the figures with a network
// size (scale scenario).
func (v *visibleResult) figures(r *run, size int) {
	if len(v.lag) > 0 {
		r.fig(Figure{Name: figNewP50, N: size, Value: msec(v.lag.p50()), Unit: "ms", Samples: len(v.lag),
			Target: lt(100, "< 100 ms median"), Anchor: anchorIf(size == 0, "PhysarumSM ≈ 84 ms")})
		r.fig(Figure{Name: figNewP99, N: size, Value: msec(v.lag.p99()), Unit: "ms", Samples: len(v.lag),
			Target: lt(1000, "< 1 s p99")})
	}
	if v.noLog > 0 {
		r.failf("%sthe allocator's \"instance running\" log line was not found for %d of %d instances", sizePrefix(size), v.noLog, len(v.fromRq))
	}
	if size == 0 {
		r.fig(Figure{Name: "new instance visible to another client after the deploy answer, p50", Value: msec(v.afterRs.p50()),
			Unit: "ms", Samples: len(v.afterRs), Note: "0 when seen before the answer"})
		r.fig(Figure{Name: "new instance visible to another client after the deploy request, p50",
			Value: msec(v.fromRq.p50()), Unit: "ms", Samples: len(v.fromRq),
			Baseline: &Baseline{Name: "deploy request to answer, p50", Value: msec(v.deploy.p50()), Unit: "ms"}})
	}
	r.notef("%sThe allocator logs \"instance running\" (ms timestamps), answers the deploy, then writes the running record to "+
		"the registry; the watching client saw %d of %d new instances before the deployer had its answer.",
		sizePrefix(size), v.early, len(v.fromRq))
}

func anchorIf(ok bool, s string) string {
	if ok {
		return s
	}
	return ""
}

func sizePrefix(size int) string {
	if size == 0 {
		return ""
	}
	return fmt.Sprintf("N=%d: ", size)
}

// runningLogged finds when allocator a logged instance id running: the
// time= of its "instance running" line (millisecond precision, so the
// lag measured from it is at most 1 ms long).
func runningLogged(a *allocator, id string) (time.Time, bool) {
	for _, l := range readLines(a.p.ErrFile) {
		if !strings.Contains(l, `msg="instance running"`) || !strings.Contains(l, " instance="+id+" ") {
			continue
		}
		f, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		t, err := time.Parse(time.RFC3339Nano, f)
		return t, err == nil
	}
	return time.Time{}, false
}
