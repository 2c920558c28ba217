package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/registry"
)

// burstSize is how many instances a burst asks for at once.
const burstSize = 20

// runBurst asks for 20 instances of one service at once, from an
// in-process client node through the placer registry-cli deploy uses
// (rank the allocators by RTT and free capacity, ask in order), and times
// until all 20 run. Baseline: the same 20 deploys one after another.
func runBurst(ctx context.Context, r *run) error {
	n, err := r.s.newNetwork(r, "burst", true)
	if err != nil {
		return err
	}
	defer n.close()
	r.sc.Setup = fmt.Sprintf("1 registry-service, 3 allocators (process runtime, 2 CPUs each: room for 20 hello "+
		"instances each); %d concurrent deploys placed from this process (allocator/deploy.Placer, as registry-cli deploy does), each from its own warm client node in this process; %s.",
		burstSize, n.timing())
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	allocs, err := n.startAllocators(ctx,
		allocSpec{name: "alloc-1", runtime: "process", cpus: "2", memory: 2048, logLevel: "debug"},
		allocSpec{name: "alloc-2", runtime: "process", cpus: "2", memory: 2048, logLevel: "debug"},
		allocSpec{name: "alloc-3", runtime: "process", cpus: "2", memory: 2048, logLevel: "debug"})
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
	for _, a := range allocs {
		if err := c.connect(ctx, a); err != nil {
			return err
		}
	}
	names := map[string]string{}
	for _, a := range allocs {
		names[a.peer.String()] = a.name
	}
	w := c.reg.WatchInstances("hello")
	defer w.Close()
	if err := w.Wait(ctx); err != nil {
		return err
	}
	// One requester per instance, each a warm client node of its own, as
	// 20 proxies or 20 registry-cli deploy runs would be (placements from
	// one node at once fail: see probeOneNode).
	r.say("starting %d warm client nodes to place from", burstSize)
	placers := make([]*deploy.Placer, burstSize)
	for i := range placers {
		pc, err := newClient(ctx, n.pass, n.regAddr, n.fast)
		if err != nil {
			return err
		}
		defer pc.close()
		var ids []peer.ID
		for _, a := range allocs {
			if err := pc.connect(ctx, a); err != nil {
				return err
			}
			ids = append(ids, a.peer)
		}
		pc.node.RTT().Measure(ctx, ids)
		placers[i] = deploy.NewPlacer(pc.node, pc.reg, nil)
	}
	place := func(i int) (*registry.Instance, time.Duration, error) {
		t0 := time.Now()
		resp, err := placers[i].Place(ctx, "hello", nil, deploy.PlaceOptions{})
		if err != nil {
			return nil, time.Since(t0), err
		}
		return resp.Instance, time.Since(t0), nil
	}

	// Warm-up: one deploy (the allocators' registry reads), not counted.
	if in, _, err := place(0); err != nil {
		return fmt.Errorf("warm-up deploy: %w", err)
	} else if err := c.stopInstance(ctx, in); err != nil {
		return err
	}
	if err := waitRunning(ctx, w, 0, 30*time.Second); err != nil {
		return err
	}

	rounds := r.pick(3, 1)
	var alls, watched dist
	var each dist
	for round := 1; round <= rounds; round++ {
		var mu sync.Mutex
		var ins []*registry.Instance
		var answered []time.Time
		var failed []string
		var last time.Duration
		seen := make(chan time.Duration, 1)
		t0 := time.Now()
		go func() {
			if err := waitRunning(ctx, w, burstSize, time.Minute); err == nil {
				seen <- time.Since(t0)
			}
			close(seen)
		}()
		var wg sync.WaitGroup
		for i := range burstSize {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in, took, err := place(i)
				done := time.Since(t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, err.Error())
					return
				}
				ins = append(ins, in)
				answered = append(answered, time.Now())
				each = append(each, took)
				last = max(last, done)
			}()
		}
		wg.Wait()
		perNode := map[string]int{}
		for _, in := range ins {
			perNode[names[in.Node]]++
		}
		if len(failed) > 0 {
			r.failf("burst round %d: %d of %d deploys failed; first: %s", round, len(failed), burstSize, failed[0])
		} else {
			alls = append(alls, last)
			if d, ok := <-seen; ok {
				watched = append(watched, d)
			} else {
				r.failf("burst round %d: a registry watch did not see %d running instances", round, burstSize)
			}
		}
		r.say("round %d: %d running in %s, placed %s", round, len(ins), last.Round(time.Millisecond), fmtCounts(perNode))
		r.notef("round %d: %d instances placed %s", round, len(ins), fmtCounts(perNode))
		if round == 1 {
			runningSpread(r, "burst round 1", t0, ins, answered, allocs)
		}
		if err := c.stopInstances(ctx, ins); err != nil {
			r.failf("stop the burst's instances: %v", err)
		}
		if err := waitRunning(ctx, w, 0, 30*time.Second); err != nil {
			return err
		}
	}

	// Baseline: the same deploys one after another.
	r.say("baseline: %d deploys one after another", burstSize)
	var seq []*registry.Instance
	t0 := time.Now()
	for range burstSize {
		in, _, err := place(0)
		if err != nil {
			return fmt.Errorf("sequential deploy: %w", err)
		}
		seq = append(seq, in)
	}
	seqTotal := time.Since(t0)
	if err := c.stopInstances(ctx, seq); err != nil {
		r.failf("stop the sequential instances: %v", err)
	}
	if len(alls) == 0 {
		return fmt.Errorf("no burst round completed")
	}
	base := &Baseline{Name: fmt.Sprintf("%d deploys one after another", burstSize), Value: secs(seqTotal), Unit: "s"}
	r.fig(Figure{Name: fmt.Sprintf("%d instances asked for at once: all running (last deploy answer), median of rounds", burstSize),
		Value: secs(alls.p50()), Unit: "s", Samples: len(alls), Target: lt(1, "< 1 s (process)"), Baseline: base,
		Anchor: "Nomad 20 tasks all running in 1.8 s"})
	r.fig(Figure{Name: fmt.Sprintf("%d instances at once: all %d seen running by a registry watch, median of rounds", burstSize, burstSize),
		Value: secs(watched.p50()), Unit: "s", Samples: len(watched), Baseline: base})
	r.fig(Figure{Name: "one deploy within the burst, p50", Value: msec(each.p50()), Unit: "ms", Samples: len(each),
		Baseline: &Baseline{Name: "one deploy alone, mean of the sequential ones", Value: msec(seqTotal) / burstSize, Unit: "ms"}})
	r.fig(Figure{Name: "one deploy within the burst, p99", Value: msec(each.p99()), Unit: "ms", Samples: len(each)})
	probeOneNode(ctx, r, c, allocs)
	r.notef("Each deploy answers once its instance is healthy (the allocator polls the instance's proxy until hello answers), " +
		"so the last answer is when all instances run.")
	return nil
}

// probeOneNode places 5 instances at once from one client node, as one
// proxy needing instances of several services at once would, and records
// what fails: every placement measures the RTT to every allocator, and
// libp2p's resource manager lets a peer hold only a few ping streams to
// another at once.
func probeOneNode(ctx context.Context, r *run, c *client, allocs []*allocator) {
	const k = 5
	placer := deploy.NewPlacer(c.node, c.reg, nil)
	var mu sync.Mutex
	var ins []*registry.Instance
	var errs []string
	var wg sync.WaitGroup
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := placer.Place(ctx, "hello", nil, deploy.PlaceOptions{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err.Error())
				return
			}
			ins = append(ins, resp.Instance)
		}()
	}
	wg.Wait()
	if err := c.stopInstances(ctx, ins); err != nil {
		r.failf("stop the probe's instances: %v", err)
	}
	if len(errs) == 0 {
		r.notef("%d placements at once from one client node all succeeded", k)
		return
	}
	var ids []peer.ID
	for _, a := range allocs {
		ids = append(ids, a.peer)
	}
	pingErrs := map[string]int{}
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, res := range c.node.RTT().Measure(ctx, ids) {
				if res.Err != nil {
					mu.Lock()
					pingErrs[res.Err.Error()]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	var why []string
	for e, n := range pingErrs {
		why = append(why, fmt.Sprintf("%d× %q", n, e))
	}
	sort.Strings(why)
	r.failf("%d of %d placements at once from one client node (allocator/deploy.Placer) failed, first: %q; "+
		"%d concurrent RTT measurements (common/rtt Tracker.Measure) of the %d allocators from that node then gave: %s",
		len(errs), k, errs[0], k, len(allocs), strings.Join(why, "; "))
}

// waitRunning waits until the watch holds exactly want running instances.
func waitRunning(ctx context.Context, w *registry.InstanceWatch, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ch := w.Changed()
		running := 0
		for _, in := range w.Instances() {
			if in.State == registry.StateRunning {
				running++
			}
		}
		if running == want {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d running instances (have %d): %w", want, running, ctx.Err())
		}
	}
}

func fmtCounts(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
