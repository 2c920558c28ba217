package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/physarum-p2p/physarum/common/launch"
)

// Names of the scale scenario's figures, which its plots draw against N.
const (
	figVisible  = "time until every allocator is visible to a client"
	figReady    = "time until every allocator said it is ready"
	figCLINodes = "registry-cli -json nodes, process start to exit"
	figRSSMean  = "allocator RSS, mean"
	figRSSMax   = "allocator RSS, max"
	figRegRSS   = "registry-service RSS"
	figCPUMean  = "allocator idle CPU, mean"
	figCPUMax   = "allocator idle CPU, max"
	figRegCPU   = "registry-service idle CPU"
	figIOMean   = "allocator background I/O (rchar+wchar), mean"
	figIOMax    = "allocator background I/O (rchar+wchar), max"
	figRegIO    = "registry-service background I/O (rchar+wchar)"
	figGetP50   = "registry get from a warm client under this load, p50"
	figGetP99   = "registry get from a warm client under this load, p99"
	figNewP50   = "new instance visible to another client after its allocator reported it running, p50"
	figNewP99   = "new instance visible to another client after its allocator reported it running, p99"
	figFDs      = "open file descriptors of the network's processes, peak sum"
	figRegFDs   = "registry-service open file descriptors, peak"
	figMemUsed  = "RSS of the network's processes, peak sum"
)

func init() {
	plotSpecs["scale"] = []plotSpec{
		{file: "scale_visible.png", title: "Every allocator visible to a client", ylabel: "seconds from the first start",
			lines: []string{figVisible, figReady}},
		{file: "scale_rss.png", title: "Memory per process (RSS)", ylabel: "MB", lines: []string{figRSSMean, figRSSMax, figRegRSS}},
		{file: "scale_cpu.png", title: "Idle CPU per process", ylabel: "% of one core", lines: []string{figCPUMean, figCPUMax, figRegCPU}},
		{file: "scale_traffic.png", title: "Background I/O per process (rchar+wchar)", ylabel: "bytes/s (log)",
			lines: []string{figIOMean, figIOMax, figRegIO}, logY: true},
		{file: "scale_registry_get.png", title: "Registry get from a warm client", ylabel: "ms", lines: []string{figGetP50, figGetP99}},
		{file: "scale_new_instance.png", title: "New instance visible to another client", ylabel: "ms after the allocator logged it running",
			lines: []string{figNewP50, figNewP99}},
		{file: "scale_fds.png", title: "Open file descriptors", ylabel: "descriptors", lines: []string{figFDs, figRegFDs}},
	}
}

// runScale starts networks of N allocators (and one registry-service) for
// each size and measures how the network holds up: time until every
// allocator is visible to a client, memory, idle CPU and background I/O
// per process, registry latency and how soon a new instance is seen.
func runScale(ctx context.Context, r *run) error {
	timing := "default (production) p2p timing"
	if r.s.o.scaleFast {
		timing = "PHYSARUM_FAST_TIMING=1"
	}
	r.sc.Setup = fmt.Sprintf("for each N in %v: a fresh network of 1 registry-service and N allocators (process runtime, "+
		"-cpus 0.1, -memory 256), started in batches of %d (each batch started together, the next once it said ready); "+
		"a client node in this process; %s; idle window %s; idle soak at the largest N: %s.",
		r.s.o.scaleSizes, r.s.o.scaleBatch, timing, r.s.o.scaleIdle, r.s.o.scaleSoak)
	r.notef("Idle CPU is utime+stime from /proc/<pid>/stat over the idle window, as %% of one core. Background I/O is the growth " +
		"of rchar+wchar in /proc/<pid>/io over the same window: every read and write system call, sockets (loopback traffic " +
		"counts once at each end), pipes and log files alike; the p2p metrics do not count bytes and /proc/net/tcp is not per " +
		"process. RSS is VmRSS at the end of the window.")
	failed := 0
	for _, size := range r.s.o.scaleSizes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := scaleOnce(ctx, r, size); err != nil {
			failed++
			r.failf("N=%d: %v", size, err)
		}
	}
	if failed == len(r.s.o.scaleSizes) {
		return fmt.Errorf("no network size completed")
	}
	return nil
}

func scaleOnce(ctx context.Context, r *run, size int) error {
	n, err := r.s.newNetwork(r, fmt.Sprintf("scale-%d", size), r.s.o.scaleFast)
	if err != nil {
		return err
	}
	defer n.close()
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	// A small service that fits twice in an allocator's 100 millicores.
	if err := n.addProcessService(ctx, "tiny", 50, 16); err != nil {
		return err
	}
	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	samp := startSampler(n)
	defer samp.stop()

	r.say("N=%d: starting %d allocators in batches of %d", size, size, r.s.o.scaleBatch)
	start := time.Now()
	var notReady []*allocator
	var ready []*allocator
	for b := 0; b < size; b += r.s.o.scaleBatch {
		var batch []*allocator
		for i := b; i < min(b+r.s.o.scaleBatch, size); i++ {
			a, err := n.spawnAllocator(allocSpec{name: fmt.Sprintf("a%03d", i+1), runtime: "process", cpus: "0.1", memory: 256})
			if err != nil {
				return fmt.Errorf("start allocator %d: %w", i+1, err)
			}
			batch = append(batch, a)
		}
		var wg sync.WaitGroup
		errs := make([]error, len(batch))
		for i, a := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = a.ready(ctx, n.dir, time.Minute)
			}()
		}
		wg.Wait()
		for i, a := range batch {
			if errs[i] != nil {
				notReady = append(notReady, a)
			} else {
				ready = append(ready, a)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.say("N=%d: %d of %d allocators ready after %s", size, len(ready), min(b+r.s.o.scaleBatch, size), since(start))
	}
	allReady := time.Since(start)
	if len(notReady) > 0 {
		r.failf("N=%d: %d allocators did not say ready within 1 minute: %s", size, len(notReady), whatBroke(notReady))
	} else {
		r.fig(Figure{Name: figReady, N: size, Value: secs(allReady), Unit: "s"})
	}

	// Visible: the registry's node list, as any client (or registry-cli
	// nodes) reads it.
	visible, at := 0, time.Duration(0)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		nodes, err := c.reg.ListNodes(ctx)
		if err == nil {
			visible = len(nodes)
			if visible >= size {
				at = time.Since(start)
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if at > 0 {
		r.fig(Figure{Name: figVisible, N: size, Value: secs(at), Unit: "s",
			Target: lt(10, "< 10 s (100 nodes)")})
	} else {
		r.failf("N=%d: only %d of %d allocators visible to a client 1 minute after the last one started; %s",
			size, visible, size, whatBroke(n.allocs))
	}
	t0 := time.Now()
	out, err := n.cli(ctx, "-json", "nodes")
	cliTook := time.Since(t0)
	if err != nil {
		r.failf("N=%d: %v", size, err)
	} else {
		var nodes []json.RawMessage
		if err := json.Unmarshal([]byte(out), &nodes); err != nil {
			r.failf("N=%d: registry-cli -json nodes printed no JSON list: %v", size, err)
		} else {
			r.fig(Figure{Name: figCLINodes, N: size, Value: msec(cliTook), Unit: "ms",
				Note: fmt.Sprintf("listed %d", len(nodes))})
			if len(nodes) != size {
				r.failf("N=%d: registry-cli -json nodes listed %d nodes", size, len(nodes))
			}
		}
	}

	// Idle window.
	settle := 5 * time.Second
	if r.quick() {
		settle = 2 * time.Second
	}
	r.say("N=%d: settling %s, then an idle window of %s", size, settle, r.s.o.scaleIdle)
	if err := sleepCtx(ctx, settle); err != nil {
		return err
	}
	var pids []int
	for _, a := range n.allocs {
		if !a.p.Exited() {
			pids = append(pids, a.p.Pid())
		}
	}
	before := snapshot(append(pids, n.reg.Pid()))
	wstart := time.Now()
	if err := sleepCtx(ctx, r.s.o.scaleIdle); err != nil {
		return err
	}
	after := snapshot(append(pids, n.reg.Pid()))
	window := time.Since(wstart).Seconds()
	var cpu, io, rss []float64
	for _, pid := range pids {
		b, a := before[pid], after[pid]
		if b == nil || a == nil {
			continue
		}
		cpu = append(cpu, 100*(a.cpu-b.cpu).Seconds()/window)
		io = append(io, float64(a.io-b.io)/window)
		rss = append(rss, mb(a.rss))
	}
	if len(cpu) == 0 {
		return fmt.Errorf("no allocator left to measure")
	}
	if len(cpu) < size {
		r.failf("N=%d: %d allocators were measured; the others had exited", size, len(cpu))
	}
	rb, ra := before[n.reg.Pid()], after[n.reg.Pid()]
	r.fig(Figure{Name: figRSSMean, N: size, Value: mean(rss), Unit: "MB", Target: lt(35, "< 35 MB")})
	r.fig(Figure{Name: figRSSMax, N: size, Value: slices.Max(rss), Unit: "MB", Target: lt(35, "< 35 MB")})
	r.fig(Figure{Name: figCPUMean, N: size, Value: mean(cpu), Unit: "% of a core"})
	r.fig(Figure{Name: figCPUMax, N: size, Value: slices.Max(cpu), Unit: "% of a core"})
	r.fig(Figure{Name: figIOMean, N: size, Value: mean(io), Unit: "B/s"})
	r.fig(Figure{Name: figIOMax, N: size, Value: slices.Max(io), Unit: "B/s"})
	if rb != nil && ra != nil {
		r.fig(Figure{Name: figRegRSS, N: size, Value: mb(ra.rss), Unit: "MB", Target: lt(60, "< 60 MB with etcd")})
		r.fig(Figure{Name: figRegCPU, N: size, Value: 100 * (ra.cpu - rb.cpu).Seconds() / window, Unit: "% of a core"})
		r.fig(Figure{Name: figRegIO, N: size, Value: float64(ra.io-rb.io) / window, Unit: "B/s"})
	}

	// Registry latency from a warm client, with N nodes renewing leases.
	for range 20 {
		if _, err := c.reg.GetService(ctx, "tiny"); err != nil {
			return fmt.Errorf("registry get: %w", err)
		}
	}
	var gets dist
	for range r.pick(300, 100) {
		t := time.Now()
		if _, err := c.reg.GetService(ctx, "tiny"); err != nil {
			return fmt.Errorf("registry get: %w", err)
		}
		gets = append(gets, time.Since(t))
	}
	r.fig(Figure{Name: figGetP50, N: size, Value: msec(gets.p50()), Unit: "ms", Samples: len(gets), Target: lt(1, "< 1 ms median")})
	r.fig(Figure{Name: figGetP99, N: size, Value: msec(gets.p99()), Unit: "ms", Samples: len(gets), Target: lt(3, "< 3 ms p99")})

	// A new instance, on allocators spread over the network.
	if len(ready) == 0 {
		return fmt.Errorf("no allocator ready to deploy on")
	}
	count := r.pick(10, 3)
	var targets []*allocator
	for i := range count {
		targets = append(targets, ready[i*len(ready)/count])
	}
	vis, err := measureVisible(ctx, n, c, "tiny", targets, count)
	if err != nil {
		r.failf("N=%d: new instance: %v", size, err)
	} else {
		vis.figures(r, size)
	}

	if size == slices.Max(r.s.o.scaleSizes) && r.s.o.scaleSoak > 0 {
		if err := soak(ctx, r, n, size, r.s.o.scaleSoak); err != nil {
			return err
		}
	}

	peak := samp.stop()
	r.fig(Figure{Name: figFDs, N: size, Value: peak.fds, Unit: "count"})
	r.fig(Figure{Name: figRegFDs, N: size, Value: peak.regFDs, Unit: "count"})
	r.fig(Figure{Name: figMemUsed, N: size, Value: peak.rssMB, Unit: "MB"})
	r.notef("N=%d: lowest MemAvailable during the run %s; most file handles allocated system-wide %s",
		size, fmtVal(peak.minAvailGiB, "GiB"), fmtVal(peak.sysFDs, ""))
	var ps []*launch.Proc
	for _, a := range n.allocs {
		ps = append(ps, a.p)
		if a.p.Exited() {
			r.failf("N=%d: %s exited during the run (%v): %s", size, a.name, a.p.Err(), a.p.Tail(3))
		}
	}
	if k, top := problemSummary(ps, 4); k > 0 {
		r.notef("N=%d: the allocators logged %d error and warning lines (before shutdown): %s", size, k, strings.Join(top, "; "))
	}
	if k, top := problemSummary([]*launch.Proc{n.reg}, 4); k > 0 {
		r.notef("N=%d: registry-service logged %d error and warning lines: %s", size, k, strings.Join(top, "; "))
	}
	return nil
}

// procUsage is one process's counters at one moment.
type procUsage struct {
	cpu time.Duration
	io  uint64
	rss uint64 // KiB
}

func snapshot(pids []int) map[int]*procUsage {
	out := map[int]*procUsage{}
	for _, pid := range pids {
		_, cpu, err := statOf(pid)
		if err != nil {
			continue
		}
		rc, wc, err := ioOf(pid)
		if err != nil {
			continue
		}
		rss, _, err := memOf(pid)
		if err != nil {
			continue
		}
		out[pid] = &procUsage{cpu: cpu, io: rc + wc, rss: rss}
	}
	return out
}

// peaks is what the sampler saw: each stays notMeasured until a read of
// it succeeds.
type peaks struct {
	fds, regFDs, sysFDs float64 // counts
	rssMB               float64 // sum over the network's processes
	minAvailGiB         float64
}

// higher returns the larger of peak and v, and v when peak is
// notMeasured.
func higher(peak, v float64) float64 {
	if !measured(peak) || v > peak {
		return v
	}
	return peak
}

// lower returns the smaller of peak and v, and v when peak is
// notMeasured.
func lower(peak, v float64) float64 {
	if !measured(peak) || v < peak {
		return v
	}
	return peak
}

// sampler watches the file descriptors and memory of a network's
// processes, and of the machine, every 500 ms.
type sampler struct {
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}
	p        peaks
}

func startSampler(n *network) *sampler {
	s := &sampler{quit: make(chan struct{}), done: make(chan struct{})}
	s.p = peaks{fds: notMeasured, regFDs: notMeasured, sysFDs: notMeasured, rssMB: notMeasured, minAvailGiB: notMeasured}
	go func() {
		defer close(s.done)
		for {
			// A process whose counts cannot be read (it is gone) adds
			// nothing to the sums; a sum of none is not taken.
			pids := n.livePIDs()
			fds, fdsRead := 0, false
			var rss uint64
			rssRead := false
			for _, pid := range pids {
				if k, err := fdsOf(pid); err == nil {
					fds, fdsRead = fds+k, true
				}
				if v, _, err := memOf(pid); err == nil {
					rss, rssRead = rss+v, true
				}
			}
			if fdsRead {
				s.p.fds = higher(s.p.fds, float64(fds))
			}
			if rssRead {
				s.p.rssMB = higher(s.p.rssMB, mb(rss))
			}
			if k, err := fdsOf(pids[0]); err == nil {
				s.p.regFDs = higher(s.p.regFDs, float64(k))
			}
			if k, err := systemFDs(); err == nil {
				s.p.sysFDs = higher(s.p.sysFDs, float64(k))
			}
			if avail := meminfo()["MemAvailable"]; avail > 0 {
				s.p.minAvailGiB = lower(s.p.minAvailGiB, float64(avail)/(1<<20))
			}
			select {
			case <-s.quit:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peaks; safe to call twice.
func (s *sampler) stop() peaks {
	s.stopOnce.Do(func() { close(s.quit) })
	<-s.done
	return s.p
}

// logNoise matches the parts of a log line that differ between
// otherwise identical events: the timestamp, peer and instance IDs.
var logNoise = regexp.MustCompile(`^time=\S+ |<peer\.ID [^>]*>|12D3Koo\w+|(hello|tiny)-[0-9a-f]{8}`)

// problemSummary counts the error and warning lines the processes
// logged, grouped by message, and returns the total and the most common.
func problemSummary(ps []*launch.Proc, top int) (int, []string) {
	counts := map[string]int{}
	total := 0
	for _, p := range ps {
		for _, l := range problems(p, 1000) {
			counts[logNoise.ReplaceAllString(l, "")]++
			total++
		}
	}
	var lines []string
	for l := range counts {
		lines = append(lines, l)
	}
	sort.Slice(lines, func(i, j int) bool { return counts[lines[i]] > counts[lines[j]] })
	var out []string
	for i, l := range lines {
		if i == top {
			out = append(out, fmt.Sprintf("and %d other kinds", len(lines)-top))
			break
		}
		out = append(out, fmt.Sprintf("%d× %q", counts[l], l))
	}
	return total, out
}

// whatBroke summarizes why allocators are not up: exits, and their error
// and warning lines, the most common first.
func whatBroke(allocs []*allocator) string {
	var exited []string
	var ps []*launch.Proc
	for _, a := range allocs {
		ps = append(ps, a.p)
		if a.p.Exited() {
			exited = append(exited, fmt.Sprintf("%s exited (%v): %s", a.name, a.p.Err(), a.p.Tail(2)))
		}
	}
	var parts []string
	if k := len(exited); k > 0 {
		if k > 5 {
			exited = append(exited[:5], fmt.Sprintf("and %d more", k-5))
		}
		parts = append(parts, fmt.Sprintf("%d exited: %s", k, strings.Join(exited, "; ")))
	}
	if n, top := problemSummary(ps, 8); n > 0 {
		parts = append(parts, fmt.Sprintf("%d error and warning lines in their logs: %s", n, strings.Join(top, "; ")))
	}
	if len(parts) == 0 {
		return "no allocator exited and none logged an error or warning"
	}
	return strings.Join(parts, "; ")
}

// mean is the mean of v, notMeasured when v is empty.
func mean(v []float64) float64 {
	if len(v) == 0 {
		return notMeasured
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
