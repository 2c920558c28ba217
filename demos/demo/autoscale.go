package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/physarum-p2p/physarum/demos/loadgen"
	"github.com/physarum-p2p/physarum/registry"
)

// The autoscaling demo (-autoscale, DEMO_AUTOSCALE=1): hello gets a policy
// and a load that ramps up through the client proxy, then stops.
const (
	asService  = "hello"
	asMin      = 1
	asMax      = 5
	asTarget   = 20 // req/s per instance
	asInterval = time.Second
	asWindow   = 15 * time.Second
	// asCooldown covers the time the load takes to reach the registry:
	// each instance's proxy measures over 5 s and its allocator publishes
	// at each heartbeat (3.3 s at the default lease). A shorter one
	// scales again on figures taken before the last change.
	asCooldown = 10 * time.Second
)

// asStages is the load's ramp.
var asStages = []struct {
	rate int // req/s
	hold time.Duration
}{{30, 20 * time.Second}, {60, 25 * time.Second}, {100, 30 * time.Second}}

// showAutoscale sets a policy on hello, ramps a load up through the
// client proxy while printing the counts and the autoscaler's decisions,
// then stops the load and waits for the scale-down. It reports whether
// hello scaled out and came back to its min.
func (d *demo) showAutoscale(ctx context.Context) bool {
	fmt.Println()
	say("autoscaling: %s gets a policy (min %d, max %d, %d req/s per instance, evaluated every %s, scale-down window %s, cooldown %s)",
		asService, asMin, asMax, asTarget, asInterval, asWindow, asCooldown)
	out, err := d.cli(ctx, "autoscale", asService, "-min", fmt.Sprint(asMin), "-max", fmt.Sprint(asMax), "-rps", fmt.Sprint(asTarget),
		"-interval", asInterval.String(), "-window", asWindow.String(), "-cooldown", asCooldown.String())
	if err != nil {
		say("autoscaling: %v", err)
		return false
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		say("  %s", line)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	w := &asWatcher{d: d, hc: hc}
	w.poll(ctx) // the policy's first decision: min 1 pins an instance
	l := startLoad(ctx, d.proxy+"/"+asService+"/")
	defer l.stop()
	start := time.Now()
	peak := 0
	for _, st := range asStages {
		l.pacer.SetRate(st.rate)
		say("load: %d req/s through the client proxy (%s/%s/)", st.rate, d.proxy, asService)
		peak = max(peak, w.follow(ctx, l, start, st.hold, nil))
		if ctx.Err() != nil {
			return false
		}
	}
	l.pacer.SetRate(0)
	stopped := time.Now()
	say("load stopped: the count comes down once the %s window has seen no recommendation as high as the count", asWindow)
	back := false
	w.follow(ctx, l, start, asWindow+45*time.Second, func(desired, running int) bool {
		back = desired == asMin && running == asMin
		return back
	})
	sent, failed, insts := l.totals()
	switch {
	case ctx.Err() != nil:
		return false
	case back:
		say("autoscaling: %s went from %d to %d instances under the load and back to %d %s after it stopped; %d requests, %d failed, answered by %d instances",
			asService, asMin, peak, asMin, since(stopped), sent, failed, insts)
	default:
		say("autoscaling: %s did not come back to %d within %s of the load stopping; %d requests, %d failed",
			asService, asMin, since(stopped), sent, failed)
	}
	if !d.o.rollout {
		say("(DEMO_ROLLOUT=1, or -rollout, then shows a rolling update of hello under a load; with DEMO_STRATEGY=blue-green a blue-green one)")
	}
	return back && peak > asMin
}

// asWatcher reads hello's status from the registry's HTTP API and says
// what changed.
type asWatcher struct {
	d        *demo
	hc       *http.Client
	lastAt   time.Time
	lastSaid time.Time
	desired  int
	running  int
}

// poll reads the status once, prints a decision the autoscaler took since
// the last read, and returns the status (nil when it could not be read).
func (w *asWatcher) poll(ctx context.Context) *registry.ServiceStatus {
	var st registry.ServiceStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.d.api+"/service/"+asService+"/status", nil)
	if err != nil {
		return nil
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &st) != nil {
		return nil
	}
	if a := st.Autoscale; a != nil && a.Last != nil && a.Last.Changed && a.Last.At.After(w.lastAt) {
		w.lastAt = a.Last.At
		say("  autoscaler at %s: %s", a.Last.At.Local().Format("15:04:05"), a.Last.Reason)
	}
	return &st
}

// follow watches the status for hold (or until done says yes), printing
// the counts when they change and every 5 s, and returns the highest
// desired count seen.
func (w *asWatcher) follow(ctx context.Context, l *demoLoad, start time.Time, hold time.Duration, done func(desired, running int) bool) int {
	peak := 0
	end := time.Now().Add(hold)
	for time.Now().Before(end) && ctx.Err() == nil {
		if st := w.poll(ctx); st != nil {
			desired := st.Computes[registry.ComputePhysarum].Desired
			peak = max(peak, desired)
			if desired != w.desired || st.RunningResources != w.running || time.Since(w.lastSaid) >= 5*time.Second {
				w.desired, w.running, w.lastSaid = desired, st.RunningResources, time.Now()
				sent, failed, insts := l.totals()
				onDemand := ""
				if st.OnDemand > 0 {
					onDemand = fmt.Sprintf(" (+%d started on demand)", st.OnDemand)
				}
				why := ""
				if a := st.Autoscale; a != nil && a.Last != nil && !a.Last.Changed {
					why = "; " + a.Last.Reason
				}
				say("  %5.1fs  load %3d req/s  desired %d  running %d%s  %d answered by %d instances, %d failed%s",
					time.Since(start).Seconds(), l.pacer.Rate(), desired, st.RunningResources, onDemand, sent-failed, insts, failed, why)
			}
			if done != nil && done(desired, st.RunningResources) {
				return peak
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	return peak
}

// demoLoad sends GETs at a rate that can be changed, on time whatever the
// earlier ones do (up to 256 in flight), and counts the answers.
type demoLoad struct {
	url    string
	hc     *http.Client
	pacer  *loadgen.Pacer
	mu     sync.Mutex
	sent   int
	failed int
	by     map[string]int // answers by instance
	stop   func()
}

func startLoad(ctx context.Context, url string) *demoLoad {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	l := &demoLoad{url: url, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}, by: map[string]int{}}
	l.pacer = loadgen.Start(ctx, 0, 10*time.Millisecond, 256, l.one, func() { l.count("", false) })
	l.stop = func() { l.pacer.Stop(); tr.CloseIdleConnections() }
	return l
}

func (l *demoLoad) one(ctx context.Context) {
	_, status, body := get(ctx, l.hc, l.url)
	if ctx.Err() != nil {
		return
	}
	inst, ok := strings.CutPrefix(body, "hello from ")
	l.count(strings.TrimSpace(inst), status == http.StatusOK && ok)
}

func (l *demoLoad) count(inst string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	if !ok {
		l.failed++
		return
	}
	l.by[inst]++
}

// totals returns the requests sent, those that failed, and how many
// instances answered.
func (l *demoLoad) totals() (sent, failed, instances int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent, l.failed, len(l.by)
}
