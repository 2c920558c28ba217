package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/registry"
)

// runReconciler measures what desired state costs an idle network: the
// leading registry-service's CPU and etcd traffic with N allocators and
// S services, each service with a desired count of 1 or 0 (alternately),
// against the same network without desired state in the same run. Four
// idle windows: nothing running and no desired state; the instances the
// desired counts will ask for deployed explicitly instead; the desired
// counts, the reconciler keeping as many pinned instances; and the
// explicit instances again once the desired state is gone (the services
// deleted and added anew), so that what drifts with time alone shows.
func runReconciler(ctx context.Context, r *run) error {
	nodes, services := r.pick(100, 20), r.pick(200, 40)
	window := time.Duration(r.pick(60, 10)) * time.Second
	settle := time.Duration(r.pick(10, 3)) * time.Second
	ones := (services + 1) / 2
	n, err := r.s.newNetwork(r, "reconciler", false)
	if err != nil {
		return err
	}
	defer n.close()
	r.sc.Setup = fmt.Sprintf("1 registry-service (the reconciler's leader; metrics scraped from its Prometheus endpoint) and %d "+
		"allocators (process runtime, -cpus 0.1, -memory 256, as in the scale scenario), started in batches of %d; %d services "+
		"(CpuReq 50, MemoryReq 16), %d of them with a desired count of 1 and %d of 0 in the third window; idle windows of %s after "+
		"%s of settling; %s.", nodes, r.s.o.scaleBatch, services, ones, services-ones, window, settle, n.timing())
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	names := make([]string, services)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%03d", i)
	}
	if err := n.addProcessService(ctx, names[0], 50, 16); err != nil {
		return err
	}
	if err := n.copyService(ctx, names[0], names[1:]...); err != nil {
		return err
	}
	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	hc := newHTTPClient(30 * time.Second)
	defer hc.CloseIdleConnections()

	r.say("starting %d allocators in batches of %d", nodes, r.s.o.scaleBatch)
	start := time.Now()
	var allocs []*allocator
	for b := 0; b < nodes; b += r.s.o.scaleBatch {
		var specs []allocSpec
		for i := b; i < min(b+r.s.o.scaleBatch, nodes); i++ {
			specs = append(specs, allocSpec{name: fmt.Sprintf("a%03d", i+1), runtime: "process", cpus: "0.1", memory: 256})
		}
		batch, err := n.startAllocators(ctx, specs...)
		if err != nil {
			return fmt.Errorf("allocators %d to %d: %w; %s", b+1, b+len(specs), err, whatBroke(batch))
		}
		allocs = append(allocs, batch...)
	}
	if _, _, err := n.waitNodes(ctx, c, nodes); err != nil {
		return err
	}
	r.say("%d allocators ready and visible after %s", nodes, since(start))
	if err := sleepCtx(ctx, settle); err != nil {
		return err
	}

	// A: no desired state, nothing running.
	label := [4]string{
		"no desired state, nothing running",
		fmt.Sprintf("no desired state, %d instances deployed explicitly", ones),
		fmt.Sprintf("desired counts: %d services × 1, %d × 0", ones, services-ones),
		fmt.Sprintf("no desired state again (the services deleted and added anew), %d instances deployed explicitly", ones),
	}
	var w [4]*idleWindow
	r.say("window 1 of 4 (%s): %s", label[0], window)
	if w[0], err = measureIdle(ctx, n, hc, window); err != nil {
		return err
	}

	// B: the same instances as the desired counts below will keep,
	// deployed explicitly.
	if w[1], err = explicitWindow(ctx, r, n, c, hc, allocs, names, ones, settle, window, "window 2 of 4 ("+label[1]+")"); err != nil {
		return err
	}

	// C: desired counts, the reconciler keeping as many instances.
	r.say("scaling %d services to 1 and %d to 0", ones, services-ones)
	var posts dist
	t0 := time.Now()
	for i, name := range names {
		t := time.Now()
		if err := n.apiScale(ctx, hc, name, "", 1-i%2); err != nil {
			return err
		}
		posts = append(posts, time.Since(t))
	}
	converged, err := waitAllRunning(ctx, n, hc, ones, 2*time.Minute)
	if err != nil {
		return err
	}
	r.fig(Figure{Name: fmt.Sprintf("one scale (POST /service/<name>/scale), %d nodes, %d services, p50", nodes, services),
		Value: msec(posts.p50()), Unit: "ms", Samples: len(posts)})
	r.fig(Figure{Name: fmt.Sprintf("one scale, %d nodes, %d services, p99", nodes, services),
		Value: msec(posts.p99()), Unit: "ms", Samples: len(posts)})
	r.notef("Scaling %d services through the HTTP API, one POST after another, took %s; %d pinned instances were running %s after the first POST.",
		services, converged.sent.Sub(t0).Round(time.Millisecond), ones, converged.at.Sub(t0).Round(time.Millisecond))
	if err := sleepCtx(ctx, settle); err != nil {
		return err
	}
	r.say("window 3 of 4 (%s): %s", label[2], window)
	if w[2], err = measureIdle(ctx, n, hc, window); err != nil {
		return err
	}
	if all, err := n.apiStatusAll(ctx, hc); err != nil {
		r.failf("status after the desired-state window: %v", err)
	} else {
		running := 0
		for _, st := range all {
			running += st.RunningResources
		}
		if running != ones {
			r.failf("after the desired-state window status shows %d pinned instances running, want %d", running, ones)
		}
	}

	// D: B again, after the desired state is gone, to show what drifts
	// with time alone.
	info, err := c.reg.GetService(ctx, names[0])
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, err := c.reg.DeleteService(ctx, name); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	if err := waitNoInstances(ctx, c, time.Minute); err != nil {
		return err
	}
	for _, name := range names {
		if _, err := c.reg.AddService(ctx, name, info); err != nil {
			return fmt.Errorf("add %s again: %w", name, err)
		}
	}
	if w[3], err = explicitWindow(ctx, r, n, c, hc, allocs, names, ones, settle, window, "window 4 of 4 ("+label[3]+")"); err != nil {
		return err
	}

	before := fmt.Sprintf("no desired state, %d instances deployed explicitly: mean of the windows before and after", ones)
	for _, f := range idleFigures {
		r.fig(Figure{Name: fmt.Sprintf("%s, %d nodes, %s", f.name, nodes, label[2]), Value: f.v(w[2]), Unit: f.unit,
			Baseline: &Baseline{Name: before, Value: (f.v(w[1]) + f.v(w[3])) / 2, Unit: f.unit}})
	}
	for _, i := range []int{0, 1, 3} {
		for _, f := range idleFigures {
			r.fig(Figure{Name: fmt.Sprintf("%s, %d nodes, %s", f.name, nodes, label[i]), Value: f.v(w[i]), Unit: f.unit})
		}
	}
	for i, x := range w {
		r.notef("Window %d (%s): load average %s at its start; etcd requests by type per second: %s; registry requests by "+
			"operation per second: %s; at its end %.0f connected peers and %.0f goroutines.",
			i+1, label[i], x.load, rates(x.etcdByType), rates(x.registryByOp), x.peers, x.goroutines)
	}
	r.notef("CPU is utime+stime of the registry-service (etcd embedded) from /proc/<pid>/stat over the window, as in the scale " +
		"scenario; etcd figures are the growth of its own counters over the window (etcd_server_request_duration_seconds_count " +
		"by type, etcd_network_client_grpc_received_bytes_total + etcd_network_client_grpc_sent_bytes_total, " +
		"etcd_debugging_lease_renewed_total, etcd_mvcc_range_total, etcd_mvcc_put_total + etcd_mvcc_delete_total; requests " +
		"through the member's in-process client count as requests but not as gRPC bytes), " +
		"registry requests physarum_registry_requests_total, passes physarum_reconciler_passes_total and its duration histogram; " +
		"\"reconcile passes, time spent\" is the sum of the passes' durations over the window, as a share of one core (an upper " +
		"bound of their CPU: a pass also waits on etcd). The reconciler runs in every window: it leads and passes every 10 s " +
		"whether or not anything is desired.")
	if k, top := problemSummary([]*launch.Proc{n.reg}, 4); k > 0 {
		r.notef("registry-service logged %d error and warning lines: %s", k, strings.Join(top, "; "))
	}
	return nil
}

// idleFigures are the figures of an idle window.
var idleFigures = []struct {
	name, unit string
	v          func(*idleWindow) float64
}{
	{"registry-service CPU", "% of a core", func(w *idleWindow) float64 { return w.cpu }},
	{"etcd requests (Range, Put, Txn, DeleteRange, LeaseGrant ...)", "/s", func(w *idleWindow) float64 { return w.etcdRequests }},
	{"etcd gRPC traffic (bytes received + sent by the etcd server)", "B/s", func(w *idleWindow) float64 { return w.grpcBytes }},
	{"etcd lease renewals", "/s", func(w *idleWindow) float64 { return w.leaseRenewals }},
	{"etcd reads (mvcc range operations)", "/s", func(w *idleWindow) float64 { return w.mvccRange }},
	{"etcd writes (mvcc put + delete)", "/s", func(w *idleWindow) float64 { return w.mvccWrites }},
	{"registry requests over libp2p", "/s", func(w *idleWindow) float64 { return w.registryRequests }},
	{"reconcile passes", "/s", func(w *idleWindow) float64 { return w.passes }},
	{"reconcile pass, mean duration", "ms", func(w *idleWindow) float64 { return w.passMean }},
	{"reconcile passes, time spent", "% of a core", func(w *idleWindow) float64 { return w.passShare }},
	{"registry-service background I/O (rchar+wchar)", "B/s", func(w *idleWindow) float64 { return w.io }},
	{"registry-service RSS at the window's end", "MB", func(w *idleWindow) float64 { return w.rss }},
}

// explicitWindow deploys one instance of every other service explicitly,
// spread over allocs, measures an idle window and stops them.
func explicitWindow(ctx context.Context, r *run, n *network, c *client, hc *http.Client, allocs []*allocator, names []string,
	count int, settle, window time.Duration, what string) (*idleWindow, error) {
	r.say("deploying %d instances explicitly, one per service that a desired count of 1 goes to", count)
	explicit, err := deploySpread(ctx, c, allocs, names, count)
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, err
	}
	r.say("%s: %s", what, window)
	w, err := measureIdle(ctx, n, hc, window)
	if err != nil {
		return nil, err
	}
	if err := c.stopInstances(ctx, explicit); err != nil {
		return nil, fmt.Errorf("stop the explicit instances: %w", err)
	}
	return w, waitNoInstances(ctx, c, time.Minute)
}

// waitNoInstances waits until the registry lists no instance.
func waitNoInstances(ctx context.Context, c *client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	left := 0
	for time.Now().Before(deadline) {
		ins, err := c.reg.ListInstances(ctx, "")
		if err == nil {
			if left = len(ins); left == 0 {
				return nil
			}
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%d instances still listed %s after they were stopped", left, timeout)
}

// idleWindow is what the registry-service did over one idle window, per
// second.
type idleWindow struct {
	cpu, io, rss                                                  float64
	etcdRequests, leaseRenewals, mvccRange, mvccWrites, grpcBytes float64
	registryRequests, passes, passMean, passShare                 float64
	etcdByType, registryByOp                                      map[string]float64
	load                                                          string
	peers, goroutines                                             float64 // at the window's end
}

// measureIdle samples the registry's process and metrics at the start and
// the end of a window.
func measureIdle(ctx context.Context, n *network, hc *http.Client, window time.Duration) (*idleWindow, error) {
	pid := n.reg.Pid()
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	m0, err := scrape(ctx, hc, n.metrics)
	if err != nil {
		return nil, err
	}
	p0 := snapshot([]int{pid})[pid]
	t0 := time.Now()
	if err := sleepCtx(ctx, window); err != nil {
		return nil, err
	}
	m1, err := scrape(ctx, hc, n.metrics)
	if err != nil {
		return nil, err
	}
	p1 := snapshot([]int{pid})[pid]
	span := time.Since(t0).Seconds()
	if p0 == nil || p1 == nil {
		return nil, fmt.Errorf("registry-service (pid %d) could not be read in /proc", pid)
	}
	rate := func(name string) float64 { return (m1.sum(name) - m0.sum(name)) / span }
	byRate := func(name, lbl string) map[string]float64 {
		a, b := m0.by(name, lbl), m1.by(name, lbl)
		out := map[string]float64{}
		for k, v := range b {
			if d := v - a[k]; d > 0 {
				out[k] = d / span
			}
		}
		return out
	}
	w := &idleWindow{
		cpu: 100 * (p1.cpu - p0.cpu).Seconds() / span, io: float64(p1.io-p0.io) / span, rss: mb(p1.rss),
		etcdRequests:     rate("etcd_server_request_duration_seconds_count"),
		leaseRenewals:    rate("etcd_debugging_lease_renewed_total"),
		grpcBytes:        rate("etcd_network_client_grpc_received_bytes_total") + rate("etcd_network_client_grpc_sent_bytes_total"),
		mvccRange:        rate("etcd_mvcc_range_total"),
		mvccWrites:       rate("etcd_mvcc_put_total") + rate("etcd_mvcc_delete_total"),
		registryRequests: rate("physarum_registry_requests_total"),
		passes:           rate("physarum_reconciler_passes_total"),
		etcdByType:       byRate("etcd_server_request_duration_seconds_count", "type"),
		registryByOp:     byRate("physarum_registry_requests_total", "op"),
		load:             load,
		peers:            m1.sum("physarum_p2p_connected_peers"),
		goroutines:       m1.sum("go_goroutines"),
	}
	w.passMean = notMeasured
	spent := m1.sum("physarum_reconciler_pass_duration_seconds_sum") - m0.sum("physarum_reconciler_pass_duration_seconds_sum")
	if k := m1.sum("physarum_reconciler_pass_duration_seconds_count") - m0.sum("physarum_reconciler_pass_duration_seconds_count"); k > 0 {
		w.passMean = 1000 * spent / k
	}
	w.passShare = 100 * spent / span
	return w, nil
}

// rates lists per-second rates, the largest first.
func rates(m map[string]float64) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case m[a] > m[b]:
			return -1
		case m[a] < m[b]:
			return 1
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// deploySpread deploys one instance of each of the first count services
// given (every other one: the services a desired count of 1 goes to),
// spread over allocs, a few at a time.
func deploySpread(ctx context.Context, c *client, allocs []*allocator, names []string, count int) ([]*registry.Instance, error) {
	var mu sync.Mutex
	var out []*registry.Instance
	var errs []error
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range count {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			in, _, _, err := c.deployTo(ctx, allocs[i%len(allocs)], names[2*i])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out = append(out, in)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		_ = c.stopInstances(ctx, out)
		return nil, fmt.Errorf("%d of %d explicit deploys failed; first: %w", len(errs), count, errs[0])
	}
	return out, nil
}

// convergence says when the scales were sent and when status showed
// them running.
type convergence struct{ sent, at time.Time }

// waitAllRunning waits until every service's status together shows want
// pinned instances running, reading GET /status each second.
func waitAllRunning(ctx context.Context, n *network, hc *http.Client, want int, timeout time.Duration) (convergence, error) {
	cv := convergence{sent: time.Now()}
	deadline := time.Now().Add(timeout)
	running := 0
	var last error
	for time.Now().Before(deadline) {
		all, err := n.apiStatusAll(ctx, hc)
		if last = err; err == nil {
			running = 0
			for _, st := range all {
				running += st.RunningResources
			}
			if running == want {
				cv.at = time.Now()
				return cv, nil
			}
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return cv, err
		}
	}
	if last != nil {
		return cv, fmt.Errorf("desired counts: status not read within %s: %w", timeout, last)
	}
	return cv, fmt.Errorf("desired counts: %d pinned instances running after %s, want %d", running, timeout, want)
}
