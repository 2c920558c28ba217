package main

import (
	"context"
	"fmt"
	"time"
)

// soakSample is what one process holds at one moment of the soak.
type soakSample struct {
	rss     uint64 // KiB
	fds     int
	threads int
}

// soak leaves the network of size allocators idle for d and checks that
// nothing crashes or leaks meanwhile: no process exits, and neither open
// file descriptors, OS threads nor RSS keep growing. It compares the end
// of the soak with its first minute's end, so that start-up settling
// (caches, first DHT refreshes) does not count as a leak.
func soak(ctx context.Context, r *run, n *network, size int, d time.Duration) error {
	warm := min(time.Minute, d/5)
	r.say("N=%d: idle soak of %s (compared from %s in)", size, d, warm)
	start := time.Now()
	if err := sleepCtx(ctx, warm); err != nil {
		return err
	}
	pids := n.livePIDs()
	first := soakSnapshot(pids)
	for left := d - warm; left > 0; left -= time.Minute {
		if err := sleepCtx(ctx, min(left, time.Minute)); err != nil {
			return err
		}
		r.say("N=%d: soak %s of %s: %d of %d processes running", size, since(start), d, len(soakSnapshot(pids)), len(pids))
	}
	last := soakSnapshot(pids)

	c := soakChange(pids, first, last)
	r.fig(Figure{Name: "soak: processes that exited", N: size, Value: float64(c.exited), Unit: "count",
		Target: lt(0.5, "0"), Note: fmt.Sprintf("%d processes, %s idle", len(pids), d.Round(time.Second))})
	r.fig(Figure{Name: "soak: open file descriptors, change of the sum", N: size, Value: c.fds, Unit: "count",
		Note: fmt.Sprintf("%d to %d", c.fds0, c.fds1)})
	r.fig(Figure{Name: "soak: OS threads, change of the sum", N: size, Value: c.threads, Unit: "count",
		Note: fmt.Sprintf("%d to %d", c.thr0, c.thr1)})
	r.fig(Figure{Name: "soak: RSS of every process, change of the sum", N: size, Value: c.rss, Unit: "%",
		Target: lt(5, "< 5% (no leak)"), Note: fmt.Sprintf("%.0f MB to %.0f MB", mb(c.rss0), mb(c.rss1))})
	r.fig(Figure{Name: "soak: largest RSS growth of one process", N: size, Value: c.maxGrowth, Unit: "MB",
		Note: fmt.Sprintf("pid %d", c.worst)})
	if c.exited > 0 {
		r.failf("N=%d: %d processes exited during the idle soak", size, c.exited)
	}
	// A leak of one descriptor per node would show as N; a few come and
	// go with connection churn. Go's runtime keeps the OS threads it once
	// needed (a blocking system call here and there), so threads may creep
	// up by a few without a leak: only about one per process counts.
	if c.fds1-c.fds0 > max(10, len(pids)/10) {
		r.failf("N=%d: open file descriptors grew from %d to %d over the idle soak", size, c.fds0, c.fds1)
	}
	if c.thr1-c.thr0 > len(pids) {
		r.failf("N=%d: OS threads grew from %d to %d over the idle soak", size, c.thr0, c.thr1)
	}
	return nil
}

// livePIDs returns the registry's and the running allocators' pids.
func (n *network) livePIDs() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	pids := []int{n.reg.Pid()}
	for _, a := range n.allocs {
		if !a.p.Exited() {
			pids = append(pids, a.p.Pid())
		}
	}
	return pids
}

func soakSnapshot(pids []int) map[int]*soakSample {
	out := map[int]*soakSample{}
	for _, pid := range pids {
		st, err := statusOf(pid)
		if err != nil {
			continue // gone
		}
		fds, err := fdsOf(pid)
		if err != nil {
			continue // gone since
		}
		out[pid] = &soakSample{rss: st["VmRSS"], fds: fds, threads: int(st["Threads"])}
	}
	return out
}

// soakChanges is how the processes that ran through a soak changed
// between its two snapshots.
type soakChanges struct {
	exited int // in the first snapshot or the last
	// Sums over the processes that ran through, at the first snapshot
	// and the last.
	fds0, fds1, thr0, thr1 int
	rss0, rss1             uint64 // KiB
	// The changes: of the descriptor and thread sums, of the RSS sum in
	// %, and the largest RSS growth of one process in MB (pid worst).
	// Each is notMeasured when every process exited: there is nothing
	// to compare, and a 0 would meet the "< 5%" target.
	fds, threads, rss, maxGrowth float64
	worst                        int
}

// soakChange compares the snapshots of pids taken at the soak's start
// and end; a pid missing from either exited.
func soakChange(pids []int, first, last map[int]*soakSample) soakChanges {
	c := soakChanges{fds: notMeasured, threads: notMeasured, rss: notMeasured, maxGrowth: notMeasured}
	for _, pid := range pids {
		a, b := first[pid], last[pid]
		if a == nil || b == nil {
			c.exited++
			continue
		}
		c.fds0, c.fds1 = c.fds0+a.fds, c.fds1+b.fds
		c.thr0, c.thr1 = c.thr0+a.threads, c.thr1+b.threads
		c.rss0, c.rss1 = c.rss0+a.rss, c.rss1+b.rss
		if g := mb(b.rss) - mb(a.rss); c.worst == 0 || g > c.maxGrowth {
			c.maxGrowth, c.worst = g, pid
		}
	}
	if c.exited == len(pids) {
		return c
	}
	c.fds = float64(c.fds1 - c.fds0)
	c.threads = float64(c.thr1 - c.thr0)
	// statusOf reads no process without RSS, so rss0 > 0.
	c.rss = 100 * (float64(c.rss1) - float64(c.rss0)) / float64(c.rss0)
	return c
}
