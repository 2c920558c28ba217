package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/registry"
)

// concurrentDeploys is how many deploys the allocator scenario sends at
// once to one allocator.
const concurrentDeploys = 50

// runAllocator times deploys, from the request until the allocator
// answers that the instance is healthy, for the process runtime and
// (when a daemon answers) Docker, against starting the same program
// directly (exec, or a container of the same image) and polling it until
// it answers; then 50 deploys at once on one allocator; and the
// allocator's memory.
func runAllocator(ctx context.Context, r *run) error {
	n, err := r.s.newNetwork(r, "allocator", true)
	if err != nil {
		return err
	}
	defer n.close()
	docker := r.s.docker != ""
	rt := r.s.allocRuntime()
	r.sc.Setup = fmt.Sprintf("1 registry-service, 1 allocator (-runtime %s, 6 CPUs, 4 GiB: room for 60 hello instances), "+
		"deploys sent from a client node in this process straight to that allocator; %s.", rt, n.timing())
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	allocs, err := n.startAllocators(ctx, allocSpec{name: "alloc-1", runtime: rt, cpus: "6", memory: 4096, logLevel: "debug"})
	if err != nil {
		return err
	}
	a := allocs[0]
	if err := n.addProcessService(ctx, "hello", 0, 0); err != nil {
		return err
	}
	if docker {
		if err := n.addDockerService(ctx, "hello-docker"); err != nil {
			return err
		}
	}
	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	if rss, _, err := memOf(a.p.Pid()); err == nil {
		r.fig(Figure{Name: "allocator RSS, idle", Value: mb(rss), Unit: "MB", Target: lt(35, "< 35 MB"),
			Anchor: "Nomad agent -dev 125 MB idle"})
	} else {
		r.failf("allocator memory: %v", err)
	}

	// Sequential deploys, each stopped before the next.
	sequential := func(service string, count int) (dist, error) {
		var d dist
		for range count {
			in, t0, t1, err := c.deployTo(ctx, a, service)
			if err != nil {
				return d, err
			}
			d = append(d, t1.Sub(t0))
			if err := c.stopInstance(ctx, in); err != nil {
				return d, err
			}
		}
		return d, nil
	}
	if _, err := sequential("hello", 2); err != nil { // warm-up
		return fmt.Errorf("warm-up deploy: %w", err)
	}
	count := r.pick(20, 5)
	r.say("process runtime: %d deploys, request to healthy, one at a time", count)
	proc, err := sequential("hello", count)
	if err != nil {
		return fmt.Errorf("process deploy: %w", err)
	}
	r.say("baseline: %d times hello started directly (exec) and polled until /healthz answers", count)
	var direct dist
	for i := range count {
		t, err := directProcess(ctx, n, i)
		if err != nil {
			return fmt.Errorf("direct start of hello: %w", err)
		}
		direct = append(direct, t)
	}
	r.fig(Figure{Name: "deploy, request to healthy, process runtime, p50", Value: msec(proc.p50()), Unit: "ms", Samples: len(proc),
		Baseline: &Baseline{Name: "hello exec'd directly until it answers, p50", Value: msec(direct.p50()), Unit: "ms"},
		Anchor:   "Nomad raw_exec: job run to first answer 210 ms"})
	r.fig(Figure{Name: "deploy, request to healthy, process runtime, p99", Value: msec(proc.p99()), Unit: "ms", Samples: len(proc),
		Baseline: &Baseline{Name: "hello exec'd directly until it answers, p99", Value: msec(direct.p99()), Unit: "ms"}})

	if docker {
		count := r.pick(10, 3)
		r.say("Docker runtime: %d deploys, request to healthy, one at a time (image cached)", count)
		if _, err := sequential("hello-docker", 1); err != nil { // warm-up
			return fmt.Errorf("warm-up deploy (Docker): %w", err)
		}
		dk, err := sequential("hello-docker", count)
		if err != nil {
			return fmt.Errorf("deploy (Docker): %w", err)
		}
		r.say("baseline: %d containers of the same image running hello alone, created, started and polled until /healthz answers", count)
		var dd dist
		for range count {
			t, err := directContainer(ctx, r.s.runID)
			if err != nil {
				return fmt.Errorf("direct container: %w", err)
			}
			dd = append(dd, t)
		}
		r.fig(Figure{Name: "deploy, request to healthy, Docker runtime, p50", Value: msec(dk.p50()), Unit: "ms", Samples: len(dk),
			Baseline: &Baseline{Name: "container of the same image (create, start, answer), p50", Value: msec(dd.p50()), Unit: "ms"},
			Anchor:   "PhysarumSM allocation 1.58 s (image cached)"})
		r.fig(Figure{Name: "deploy, request to healthy, Docker runtime, p99", Value: msec(dk.p99()), Unit: "ms", Samples: len(dk),
			Baseline: &Baseline{Name: "container of the same image, p99", Value: msec(dd.p99()), Unit: "ms"}})
	} else {
		r.notef("Docker runtime not measured: no Docker daemon answers (%v)", r.s.dockerErr)
	}

	r.say("%d deploys at once on one allocator", concurrentDeploys)
	var mu sync.Mutex
	var ins []*registry.Instance
	var answered []time.Time
	var each dist
	var failed []string
	var last time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrentDeploys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, t0, t1, err := c.deployTo(ctx, a, "hello")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err.Error())
				return
			}
			ins = append(ins, in)
			answered = append(answered, t1)
			each = append(each, t1.Sub(t0))
			last = max(last, t1.Sub(start))
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		r.failf("%d of %d concurrent deploys failed; first: %s", len(failed), concurrentDeploys, failed[0])
	}
	if len(ins) > 0 {
		r.fig(Figure{Name: fmt.Sprintf("%d deploys at once on one allocator: all running", concurrentDeploys), Value: secs(last),
			Unit: "s", Samples: len(ins),
			Baseline: &Baseline{Name: fmt.Sprintf("%d sequential deploys (p50 × %d)", concurrentDeploys, concurrentDeploys),
				Value: secs(proc.p50()) * concurrentDeploys, Unit: "s"}})
		r.fig(Figure{Name: "one deploy among 50 at once, p50", Value: msec(each.p50()), Unit: "ms", Samples: len(each)})
		r.fig(Figure{Name: "one deploy among 50 at once, p99", Value: msec(each.p99()), Unit: "ms", Samples: len(each)})
		runningSpread(r, fmt.Sprintf("%d at once", concurrentDeploys), start, ins, answered, allocs)
	}
	if rss, _, err := memOf(a.p.Pid()); err == nil {
		r.fig(Figure{Name: fmt.Sprintf("allocator RSS with %d instances", len(ins)), Value: mb(rss), Unit: "MB"})
	}
	if err := c.stopInstances(ctx, ins); err != nil {
		r.failf("stop the instances: %v", err)
	}
	r.notef("A deploy's answer comes once the allocator has seen the instance healthy (it polls the instance's proxy, " +
		"starting at 5 ms and backing off); the direct baselines poll /healthz every millisecond.")
	return nil
}

// directProcess starts bin/hello on a free port, as an allocator would
// but without one, and returns the time until /healthz answers.
func directProcess(ctx context.Context, n *network, i int) (time.Duration, error) {
	port := freeport.One("127.0.0.1")
	start := time.Now()
	p, err := n.s.procs.spawn(n.dir, "direct-hello-"+strconv.Itoa(i), n.bin("hello"), nil,
		[]string{"SERVICE_PORT=" + strconv.Itoa(port)})
	if err != nil {
		return 0, err
	}
	defer p.Stop(5 * time.Second)
	if err := waitHealthy(ctx, port, 10*time.Second); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// runningSpread splits the time deploys sent together took: when their
// allocators logged the instances running ("instance running", ms
// precision), and how long after that each answer arrived.
func runningSpread(r *run, label string, start time.Time, ins []*registry.Instance, answered []time.Time, allocs []*allocator) {
	byPeer := map[string]*allocator{}
	for _, a := range allocs {
		byPeer[a.peer.String()] = a
	}
	var first, last time.Duration
	var lag dist
	for i, in := range ins {
		a := byPeer[in.Node]
		if a == nil {
			continue
		}
		at, ok := runningLogged(a, in.ID)
		if !ok {
			r.failf("%s: no \"instance running\" line for %s in %s's log", label, in.ID, a.name)
			continue
		}
		d := at.Sub(start)
		if len(lag) == 0 || d < first {
			first = d
		}
		last = max(last, d)
		lag = append(lag, answered[i].Sub(at))
	}
	if len(lag) == 0 {
		return
	}
	for _, a := range allocs {
		if n, top := registryWriteErrors(a); n > 0 {
			r.failf("%s: %s logged %d failed writes to the registry so far in this scenario (retried later; debug log level), most common: %s",
				label, a.name, n, strings.Join(top, "; "))
		}
	}
	r.fig(Figure{Name: label + ": first instance logged running by its allocator", Value: secs(first), Unit: "s"})
	r.fig(Figure{Name: label + ": last instance logged running by its allocator", Value: secs(last), Unit: "s"})
	r.fig(Figure{Name: label + ": deploy answer after the instance was logged running, p50", Value: msec(lag.p50()), Unit: "ms", Samples: len(lag)})
	r.fig(Figure{Name: label + ": deploy answer after the instance was logged running, max", Value: msec(lag.at(100)), Unit: "ms", Samples: len(lag)})
}

// instanceID matches the instance IDs the suite's services get.
var instanceID = regexp.MustCompile(`(hello|tiny)-[0-9a-f]{8}`)

// registryWriteErrors counts the allocator's failed writes of instance
// and node records to the registry (logged at debug level while they are
// retried, warn for node records) and returns the most common errors.
func registryWriteErrors(a *allocator) (int, []string) {
	counts := map[string]int{}
	n := 0
	for _, l := range readLines(a.p.ErrFile) {
		if !strings.Contains(l, `msg="publish instance record"`) && !strings.Contains(l, `msg="publish node record"`) {
			continue
		}
		n++
		_, e, _ := strings.Cut(l, " err=")
		e = instanceID.ReplaceAllString(e, "<id>")
		counts[e]++
	}
	var top []string
	for e := range counts {
		top = append(top, e)
	}
	sort.Slice(top, func(i, j int) bool { return counts[top[i]] > counts[top[j]] })
	if len(top) > 3 {
		top = top[:3]
	}
	for i, e := range top {
		top[i] = fmt.Sprintf("%d× %s", counts[e], e)
	}
	return n, top
}
