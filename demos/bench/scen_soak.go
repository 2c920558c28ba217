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

	exited := 0
	var fds0, fds1, thr0, thr1 int
	var rss0, rss1 uint64
	maxGrowth, worst := 0.0, 0
	for _, pid := range pids {
		a, b := first[pid], last[pid]
		if a == nil || b == nil {
			exited++
			continue
		}
		fds0, fds1 = fds0+a.fds, fds1+b.fds
		thr0, thr1 = thr0+a.threads, thr1+b.threads
		rss0, rss1 = rss0+a.rss, rss1+b.rss
		if g := mb(b.rss) - mb(a.rss); g > maxGrowth {
			maxGrowth, worst = g, pid
		}
	}
	r.fig(Figure{Name: "soak: processes that exited", N: size, Value: float64(exited), Unit: "count",
		Target: lt(0.5, "0"), Note: fmt.Sprintf("%d processes, %s idle", len(pids), d.Round(time.Second))})
	r.fig(Figure{Name: "soak: open file descriptors, change of the sum", N: size, Value: float64(fds1 - fds0), Unit: "count",
		Note: fmt.Sprintf("%d to %d", fds0, fds1)})
	r.fig(Figure{Name: "soak: OS threads, change of the sum", N: size, Value: float64(thr1 - thr0), Unit: "count",
		Note: fmt.Sprintf("%d to %d", thr0, thr1)})
	growth := 100 * (float64(rss1) - float64(rss0)) / max(1, float64(rss0))
	r.fig(Figure{Name: "soak: RSS of every process, change of the sum", N: size, Value: growth, Unit: "%",
		Target: lt(5, "< 5% (no leak)"), Note: fmt.Sprintf("%.0f MB to %.0f MB", mb(rss0), mb(rss1))})
	r.fig(Figure{Name: "soak: largest RSS growth of one process", N: size, Value: maxGrowth, Unit: "MB",
		Note: fmt.Sprintf("pid %d", worst)})
	if exited > 0 {
		r.failf("N=%d: %d processes exited during the idle soak", size, exited)
	}
	// A leak of one descriptor per node would show as N; a few come and
	// go with connection churn. Go's runtime keeps the OS threads it once
	// needed (a blocking system call here and there), so threads may creep
	// up by a few without a leak: only about one per process counts.
	if fds1-fds0 > max(10, len(pids)/10) {
		r.failf("N=%d: open file descriptors grew from %d to %d over the idle soak", size, fds0, fds1)
	}
	if thr1-thr0 > len(pids) {
		r.failf("N=%d: OS threads grew from %d to %d over the idle soak", size, thr0, thr1)
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
		out[pid] = &soakSample{rss: st["VmRSS"], fds: fdsOf(pid), threads: int(st["Threads"])}
	}
	return out
}
