package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/registry"
)

// loadLog sends a steady load through a client proxy (keep-alive and new
// connections both) and keeps who answered each request, and when.
type loadLog struct {
	mu       sync.Mutex
	by       []answer
	failures []string
	stop     func()
}

type answer struct {
	sent, at time.Time // the request's sending, and its answer
	instance string
}

func loadAnswers(url string, perSecond int) *loadLog {
	a := &loadLog{}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	a.stop = sync.OnceFunc(func() { close(quit); wg.Wait() })
	for _, c := range []*http.Client{
		{Timeout: 10 * time.Second},
		{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	} {
		wg.Go(func() {
			tick := time.NewTicker(time.Second / time.Duration(perSecond/2))
			defer tick.Stop()
			for {
				select {
				case <-quit:
					return
				case <-tick.C:
				}
				sent := time.Now()
				inst, err := helloFrom(c, url)
				a.mu.Lock()
				if err != nil {
					a.failures = append(a.failures, err.Error())
				} else {
					a.by = append(a.by, answer{sent, time.Now(), inst})
				}
				a.mu.Unlock()
			}
		})
	}
	return a
}

// waitAnswers waits until n requests sent after since were answered.
func (a *loadLog) waitAnswers(t *testing.T, since time.Time, n int) {
	t.Helper()
	eventually.True(t, 30*time.Second, fmt.Sprintf("%d answers", n), func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		k := 0
		for _, x := range a.by {
			if x.at.After(since) {
				k++
			}
		}
		return k >= n
	})
}

// helloFrom asks hello once and returns the instance that answered.
func helloFrom(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	inst, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "hello from ")
	if resp.StatusCode != http.StatusOK || !ok {
		return "", fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return inst, nil
}

// versionWatch keeps the version of every instance of a service the
// status showed, while it runs.
type versionWatch struct {
	mu   sync.Mutex
	of   map[string]int
	stop func()
}

func watchVersions(t *testing.T, base, service string) *versionWatch {
	t.Helper()
	w := &versionWatch{of: map[string]int{}}
	w.stop = pollStatus(t, base, service, func(st registry.ServiceStatus) {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, in := range st.Instances {
			w.of[in.ID] = in.Version
		}
	})
	return w
}

func (w *versionWatch) version(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.of[id]
}

// helloConfig writes a config for the hello demo with extra Exec fields.
func (n *network) helloConfig(command string, env map[string]string) string {
	n.t.Helper()
	b, _ := json.Marshal(map[string]any{"CpuReq": 100, "MemoryReq": 32, "Exec": map[string]any{"Command": command, "Env": env}})
	path := filepath.Join(n.t.TempDir(), "hello.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		n.t.Fatal(err)
	}
	return path
}

func waitRollout(t *testing.T, n *network, service string, done func(registry.Rollout) bool, timeout time.Duration) registry.Rollout {
	t.Helper()
	var ro registry.Rollout
	eventually.Succeeds(t, timeout, func() error {
		var ros []registry.Rollout
		if err := json.Unmarshal([]byte(n.mustCLI("-json", "rollouts", service)), &ros); err != nil {
			return err
		}
		if len(ros) != 1 {
			return fmt.Errorf("rollouts: %v, want one", ros)
		}
		ro = ros[0]
		if !done(ro) {
			return fmt.Errorf("rollout %s: %s", ro.State, ro.Message)
		}
		return nil
	})
	return ro
}

// webUnderLoad starts a network of two allocators and a client proxy,
// runs web (hello) at 3 pinned instances of version 1, watches their
// versions and puts about 200 req/s on it through the proxy; it returns
// once the load has had 100 answers.
func webUnderLoad(t *testing.T) (*network, *versionWatch, *loadLog) {
	t.Helper()
	n := newNetwork(t)
	n.registry()
	n.namedAllocator("w-1", "")
	n.namedAllocator("w-2", "")
	_, proxy := n.proxy()
	n.mustCLI("add", n.helloConfig(n.bin["hello"], nil), "web")
	n.mustCLI("scale", "web", "3")
	waitRunning(t, n.api, "web", registry.ComputePhysarum, 3, time.Minute)
	versions := watchVersions(t, n.api, "web")
	l := loadAnswers(proxy+"/web/", 200)
	t.Cleanup(l.stop)
	l.waitAnswers(t, time.Time{}, 100)
	return n, versions, l
}

// TestRollingUpdateUnderLoadFailsNoRequest: a 3-instance process service
// under about 200 req/s through a client proxy is rolled to a new version:
// no request fails, every answer comes from an instance of the old or the
// new version, and at the end only new ones answer.
func TestRollingUpdateUnderLoadFailsNoRequest(t *testing.T) {
	n, versions, l := webUnderLoad(t)
	defer l.stop()

	out := n.mustCLI("update", "-min-healthy", "2s", n.helloConfig(n.bin["hello"], map[string]string{"HELLO_VERSION": "2"}), "web")
	if !strings.Contains(out, "from version 1 to 2") {
		t.Fatalf("update said %q", out)
	}
	ro := waitRollout(t, n, "web", func(ro registry.Rollout) bool { return ro.State != registry.RolloutRunning }, 2*time.Minute)
	if ro.State != registry.RolloutSucceeded {
		t.Fatalf("rollout %+v", ro)
	}
	ended := time.Now()
	l.waitAnswers(t, ended, 200) // the new version serves the load after the rollout
	l.stop()
	versions.stop()

	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 0 {
		t.Fatalf("%d of %d requests failed during the rolling update: %v", len(l.failures), len(l.failures)+len(l.by), l.failures[:min(5, len(l.failures))])
	}
	seen := map[int]int{}
	for _, a := range l.by {
		v := versions.version(a.instance)
		if v != 1 && v != 2 {
			t.Fatalf("answered by %s, of version %d", a.instance, v)
		}
		seen[v]++
		if a.at.After(ended) && v != 2 {
			t.Fatalf("answered by %s of version %d after the rollout ended", a.instance, v)
		}
	}
	if seen[1] == 0 || seen[2] == 0 {
		t.Fatalf("answers by version %v: want both", seen)
	}
	st, err := status(t, n.api, "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range pinned(st) {
		if in.Version != 2 {
			t.Fatalf("instance %s still of version %d", in.ID, in.Version)
		}
	}
	t.Logf("%d requests, none failed: %d answered by version 1, %d by version 2", len(l.by), seen[1], seen[2])
}

// TestARolloutThatCrashesIsRevertedWhileTheOldVersionServes: a new version
// that crashes at start fails its rollout within the deadline, which
// reverts; the old version serves throughout, and the rollout says why.
func TestARolloutThatCrashesIsRevertedWhileTheOldVersionServes(t *testing.T) {
	n := newNetwork(t)
	n.registry()
	n.namedAllocator("c-1", "", "-max-restarts", "1")
	_, proxy := n.proxy()
	n.mustCLI("add", n.helloConfig(n.bin["hello"], nil), "web")
	n.mustCLI("scale", "web", "2")
	waitRunning(t, n.api, "web", registry.ComputePhysarum, 2, time.Minute)
	l := loadAnswers(proxy+"/web/", 100)
	defer l.stop()

	n.mustCLI("update", "-min-healthy", "1s", "-healthy-deadline", "20s", n.helloConfig("/bin/false", nil), "web")
	ro := waitRollout(t, n, "web", func(ro registry.Rollout) bool { return ro.RevertOf != 0 && ro.State != registry.RolloutRunning }, 2*time.Minute)
	l.stop()
	if ro.State != registry.RolloutReverted || ro.RevertOf != 2 || ro.To != 3 {
		t.Fatalf("rollout %+v: want version 2 reverted by version 3", ro)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 0 {
		t.Fatalf("%d requests failed while the bad version rolled out and back: %v", len(l.failures), l.failures[:min(5, len(l.failures))])
	}
	if len(l.by) == 0 {
		t.Fatal("no request was answered")
	}
	// The events said why.
	evs := n.mustCLI("events", "-since", "1", "-topic", "rollout:web", "-json")
	if !strings.Contains(evs, `"state":"failed"`) || !strings.Contains(evs, "of version 2 failed") {
		t.Fatalf("rollout events do not say why:\n%s", evs)
	}
}

// TestUpdateThroughTheHTTPAPI: PUT /service/<name> with a strategy rolls
// the service out (the same Update as registry-cli update); a second one
// while it runs is a 409, a bad strategy a 400 naming the field, and
// status shows the rollout.
func TestUpdateThroughTheHTTPAPI(t *testing.T) {
	n := newNetwork(t)
	n.registry()
	n.namedAllocator("h-1", "")
	n.mustCLI("add", n.helloConfig(n.bin["hello"], nil), "web")
	n.mustCLI("scale", "web", "1")
	waitRunning(t, n.api, "web", registry.ComputePhysarum, 1, time.Minute)
	def := func(v string) map[string]any {
		return map[string]any{"CpuReq": 100, "MemoryReq": 32, "Exec": map[string]any{"Command": n.bin["hello"], "Env": map[string]string{"HELLO_VERSION": v}}}
	}
	bad := def("2")
	bad["strategy"] = map[string]any{"max_parallel": -1}
	if code, body := api(t, http.MethodPut, n.api+"/service/web", bad); code != http.StatusBadRequest || !strings.Contains(string(body), "max_parallel") {
		t.Fatalf("bad strategy: %d %s", code, body)
	}
	body := def("2")
	body["strategy"] = map[string]any{"type": "rolling", "min_healthy_time": "30s"}
	var answer struct {
		Message string           `json:"message"`
		Rollout registry.Rollout `json:"rollout"`
	}
	if err := json.Unmarshal(mustAPI(t, http.MethodPut, n.api+"/service/web", body), &answer); err != nil {
		t.Fatal(err)
	}
	if answer.Rollout.From != 1 || answer.Rollout.To != 2 || answer.Rollout.State != registry.RolloutRunning {
		t.Fatalf("answer %+v", answer)
	}
	again := def("3")
	again["strategy"] = map[string]any{}
	if code, body := api(t, http.MethodPut, n.api+"/service/web", again); code != http.StatusConflict {
		t.Fatalf("a second update while one runs: %d %s", code, body)
	}
	st, err := status(t, n.api, "web")
	if err != nil || st.Rollout == nil || st.Rollout.To != 2 {
		t.Fatalf("status: %+v %v", st.Rollout, err)
	}
	// Promote has no window to end in a rolling rollout; rollback ends it
	// and answers the revert, as registry-cli rollback does.
	if code, body := api(t, http.MethodPost, n.api+"/service/web/rollback", nil); code != http.StatusUnsupportedMediaType {
		t.Fatalf("a rollback without the JSON Content-Type (as a page of another origin sends it): %d %s", code, body)
	}
	if code, body := api(t, http.MethodPost, n.api+"/service/web/promote", map[string]any{}); code != http.StatusConflict || !strings.Contains(string(body), "blue-green") {
		t.Fatalf("promote of a rolling rollout: %d %s", code, body)
	}
	if err := json.Unmarshal(mustAPI(t, http.MethodPost, n.api+"/service/web/rollback", map[string]any{}), &answer); err != nil {
		t.Fatal(err)
	}
	if answer.Rollout.RevertOf != 2 || answer.Rollout.To != 3 || !strings.Contains(answer.Message, "rolled back by") {
		t.Fatalf("rollback answered %+v", answer)
	}
	if code, body := api(t, http.MethodPost, n.api+"/service/web/rollback", map[string]any{}); code != http.StatusConflict {
		t.Fatalf("a second rollback: %d %s", code, body)
	}
	if code, body := api(t, http.MethodPost, n.api+"/service/nope/promote", map[string]any{}); code != http.StatusNotFound {
		t.Fatalf("promote of an unknown service: %d %s", code, body)
	}
}

// switchOver finds where answers moved from the versions of from to the
// versions of to among those sent after since: the last request sent
// that one of from answered, and the first that one of to did. A switch
// at one point in time has lastFrom before firstTo, give or take the
// jitter between the two clients of the load.
func (a *loadLog) switchOver(since time.Time, versions *versionWatch, from, to func(v int) bool) (lastFrom, firstTo time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, x := range a.by {
		if x.sent.Before(since) {
			continue
		}
		v := versions.version(x.instance)
		if from(v) && x.sent.After(lastFrom) {
			lastFrom = x.sent
		}
		if to(v) && (firstTo.IsZero() || x.sent.Before(firstTo)) {
			firstTo = x.sent
		}
	}
	return lastFrom, firstTo
}

// TestBlueGreenUnderLoadSwitchesAtOnceAndRollsBack: a 3-instance process
// service under about 200 req/s through a client proxy is updated
// blue-green: the new set starts beside the old one, which alone answers;
// answers move from all-old to all-new at one point in time; a rollback
// inside the window moves them back the same way; no request fails.
func TestBlueGreenUnderLoadSwitchesAtOnceAndRollsBack(t *testing.T) {
	n, versions, l := webUnderLoad(t)
	defer versions.stop()
	defer l.stop()
	began := time.Now()

	out := n.mustCLI("update", "-strategy", "blue-green", "-min-healthy", "2s", "-rollback-window", "5m",
		n.helloConfig(n.bin["hello"], map[string]string{"HELLO_VERSION": "2"}), "web")
	if !strings.Contains(out, "blue-green") {
		t.Fatalf("update said %q", out)
	}
	ro := waitRollout(t, n, "web", func(ro registry.Rollout) bool { return !ro.Switched.IsZero() }, 2*time.Minute)
	if ro.State != registry.RolloutRunning {
		t.Fatalf("rollout %+v: want it running, inside its window", ro)
	}
	switched := time.Now()
	l.waitAnswers(t, switched, 200)
	old := func(v int) bool { return v == 1 }
	isNew := func(v int) bool { return v == 2 }
	lastOld, firstNew := l.switchOver(began, versions, old, isNew)
	if firstNew.IsZero() || lastOld.Sub(firstNew) > 100*time.Millisecond {
		t.Fatalf("the switch was not at one point: an old instance answered a request sent %s after a new one had", lastOld.Sub(firstNew))
	}
	// Inside the window both sets run; the old one stands by.
	st, err := status(t, n.api, "web")
	if err != nil {
		t.Fatal(err)
	}
	standby := 0
	for _, in := range pinned(st) {
		if in.Standby {
			standby++
		}
	}
	if standby != 3 || st.Route == nil || !st.Route.Switched {
		t.Fatalf("status inside the window: %d on standby, route %+v; want 3 and switched", standby, st.Route)
	}

	back := time.Now()
	out = n.mustCLI("rollback", "web")
	if !strings.Contains(out, "reverts 2") {
		t.Fatalf("rollback said %q", out)
	}
	ro = waitRollout(t, n, "web", func(ro registry.Rollout) bool { return ro.State != registry.RolloutRunning }, 2*time.Minute)
	if ro.State != registry.RolloutReverted || ro.RevertOf != 2 {
		t.Fatalf("rollout after the rollback %+v", ro)
	}
	l.waitAnswers(t, time.Now(), 200)
	l.stop()
	lastNew, firstBack := l.switchOver(back, versions, isNew, old)
	if firstBack.IsZero() || lastNew.Sub(firstBack) > 100*time.Millisecond {
		t.Fatalf("the rollback was not at one point: a new instance answered a request sent %s after an old one had", lastNew.Sub(firstBack))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 0 {
		t.Fatalf("%d of %d requests failed during the blue-green update and its rollback: %v", len(l.failures), len(l.failures)+len(l.by), l.failures[:min(5, len(l.failures))])
	}
	t.Logf("%d requests, none failed; switch: the last old answer was sent %s before the first new one; rollback: the last new %s before the first old",
		len(l.by), firstNew.Sub(lastOld), firstBack.Sub(lastNew))
}
