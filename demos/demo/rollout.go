package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// The rolling-update demo (-rollout, DEMO_ROLLOUT=1): hello, pinned at a
// few instances under a load through the client proxy, is rolled to a new
// version.
const (
	roService    = "hello"
	roInstances  = 3
	roRate       = 100 // req/s
	roMinHealthy = 3 * time.Second
	roWindow     = 10 * time.Second // blue-green: the old set's rollback window
	roTimeout    = 3 * time.Minute
)

// showRollout pins hello at roInstances, puts a load on it through the
// client proxy, rolls it to a new version (its env changed) with
// registry-cli update, and prints the rollout's progress and the
// instances by version until it ends; then the failed-request count. It
// reports whether the rollout succeeded with no request failed.
func (d *demo) showRollout(ctx context.Context) bool {
	fmt.Println()
	say("%s update: %s pinned at %d instances under %d req/s through the client proxy, then rolled to a new version",
		d.o.strategy, roService, roInstances, roRate)
	if d.o.autoscale {
		// The policy would change the count under the rollout.
		if _, err := d.cli(ctx, "autoscale", roService, "-off"); err != nil {
			say("rolling update: %v", err)
			return false
		}
	}
	if _, err := d.cli(ctx, "scale", roService, fmt.Sprint(roInstances)); err != nil {
		say("rolling update: %v", err)
		return false
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	var st *registry.ServiceStatus
	for deadline := time.Now().Add(time.Minute); ; {
		st = d.serviceStatus(ctx, hc, roService)
		if st != nil && len(pinnedRunning(st)) == roInstances {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			say("rolling update: %s did not reach %d running instances within a minute", roService, roInstances)
			return false
		}
		sleep(ctx, 500*time.Millisecond)
	}
	from := 0
	for _, v := range pinnedRunning(st) {
		from = max(from, v)
	}
	args, err := d.nextVersion()
	if err != nil {
		say("rolling update: %v", err)
		return false
	}
	l := startLoad(ctx, d.proxy+"/"+roService+"/")
	defer l.stop()
	l.pacer.SetRate(roRate)
	say("load: %d req/s through the client proxy (%s/%s/), over kept-alive connections", roRate, d.proxy, roService)
	sleep(ctx, 3*time.Second)
	start := time.Now()
	opts := []string{"-strategy", d.o.strategy, "-min-healthy", roMinHealthy.String()}
	if d.o.strategy == registry.StrategyBlueGreen {
		opts = append(opts, "-rollback-window", roWindow.String())
	}
	out, err := d.cli(ctx, append(append([]string{"update"}, opts...), args...)...)
	if err != nil {
		say("rolling update: %v", err)
		return false
	}
	say("$ registry-cli update %s %s", strings.Join(opts, " "), strings.Join(args, " "))
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		say("  %s", line)
	}
	versions := map[string]int{} // every instance seen: id → version
	var ro *registry.Rollout
	said := ""
	for ctx.Err() == nil {
		if st := d.serviceStatus(ctx, hc, roService); st != nil {
			for _, in := range st.Instances {
				versions[in.ID] = in.Version
			}
			if r := st.Rollout; r != nil && r.From >= from {
				ro = r
				byVer := byVersion(pinnedRunning(st))
				if line := r.State + r.Message + byVer; line != said {
					said = line
					sent, failed, _ := l.totals()
					say("  %5.1fs  rollout %s: %s | pinned instances running: %s | %d answered, %d failed",
						time.Since(start).Seconds(), r.State, r.Message, byVer, sent-failed, failed)
				}
				if r.State != registry.RolloutRunning {
					break
				}
			}
		}
		if time.Since(start) > roTimeout {
			say("rolling update: not ended within %s", roTimeout)
			break
		}
		sleep(ctx, 500*time.Millisecond)
	}
	took := time.Since(start)
	atEnd := l.answers()
	sleep(ctx, 2*time.Second) // a little load after the end, on purpose
	l.stop()
	if ctx.Err() != nil || ro == nil {
		return false
	}
	sent, failed, _ := l.totals()
	all := l.answers()
	after := map[string]int{}
	for inst, k := range all {
		if k > atEnd[inst] {
			after[inst] = k - atEnd[inst]
		}
	}
	say("%s update: %s version %d → %d %s in %.1fs; %d requests under the load, %d failed; answered by %s; in the 2s after the end by %s",
		d.o.strategy, roService, ro.From, ro.To, ro.State, took.Seconds(), sent, failed, answersByVersion(all, versions), answersByVersion(after, versions))
	if onDemand := d.serviceStatus(ctx, hc, roService); onDemand != nil && onDemand.OnDemand > 0 {
		say("(%d instance started on demand for the first request is not rolled: it answers from its version until it has been idle)",
			onDemand.OnDemand)
	}
	if d.o.strategy == registry.StrategyRolling {
		say("(-strategy blue-green, or DEMO_STRATEGY=blue-green, shows a blue-green update instead: every proxy switches at once)")
	}
	return ro.State == registry.RolloutSucceeded && failed == 0
}

// nextVersion writes hello's definition with HELLO_VERSION set and
// returns update's arguments for it: a process config, or for the Docker
// runtime a config and the image to build from it.
func (d *demo) nextVersion() ([]string, error) {
	kind := "exec"
	if d.runtime == "docker" {
		kind = "docker"
	}
	b, err := os.ReadFile(filepath.Join(d.o.services, roService+"."+kind+".json"))
	if err != nil {
		return nil, fmt.Errorf("demo service config: %w", err)
	}
	bin, err := filepath.Abs(d.o.bin)
	if err != nil {
		return nil, err
	}
	var def map[string]any
	if err := json.Unmarshal([]byte(strings.ReplaceAll(string(b), "${DEMO_BIN}", bin)), &def); err != nil {
		return nil, fmt.Errorf("demo service config: %w", err)
	}
	key := "Exec"
	if kind == "docker" {
		key = "DockerConf"
	}
	conf, _ := def[key].(map[string]any)
	if conf == nil {
		return nil, fmt.Errorf("demo service config: no %s", key)
	}
	conf["Env"] = map[string]string{"HELLO_VERSION": "2"}
	out, _ := json.MarshalIndent(def, "", "  ")
	path := filepath.Join(d.dir, roService+"-v2."+kind+".json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return nil, err
	}
	if kind == "docker" {
		return []string{"-dir", d.o.bin, path, roImage, roService}, nil
	}
	return []string{path, roService}, nil
}

// roImage is the image of hello's new version under the Docker runtime.
const roImage = "physarum-demo/" + roService + ":v2"

// serviceStatus reads a service's status from the registry's HTTP API
// (nil when it could not be read).
func (d *demo) serviceStatus(ctx context.Context, hc *http.Client, service string) *registry.ServiceStatus {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.api+"/service/"+service+"/status", nil)
	if err != nil {
		return nil
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var st registry.ServiceStatus
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &st) != nil {
		return nil
	}
	return &st
}

// answers returns a copy of the answers counted so far, by instance.
func (l *demoLoad) answers() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.by)
}

// answersByVersion counts answers by the version of the instance that
// answered: "version 1: 952, version 2: 606".
func answersByVersion(by map[string]int, versions map[string]int) string {
	k := map[int]int{}
	for inst, n := range by {
		k[versions[inst]] += n
	}
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(k)) {
		parts = append(parts, fmt.Sprintf("version %d: %d", v, k[v]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// pinnedRunning returns the running pinned instances: id → version.
func pinnedRunning(st *registry.ServiceStatus) map[string]int {
	out := map[string]int{}
	for _, in := range st.Instances {
		if !in.OnDemand && in.Compute != "" && in.State == registry.StateRunning {
			out[in.ID] = in.Version
		}
	}
	return out
}

// byVersion counts instances by version: "v1 ×2, v2 ×1".
func byVersion(ins map[string]int) string {
	k := map[int]int{}
	for _, v := range ins {
		k[v]++
	}
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(k)) {
		parts = append(parts, fmt.Sprintf("v%d ×%d", v, k[v]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
