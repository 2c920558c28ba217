package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
)

// Desired state end to end: real registry-services (three voters), real
// process allocators, the HTTP API and registry-cli, as an operator uses
// them.

// api sends a JSON request to a registry's (or a connector's) HTTP API
// and returns the status and body.
func api(t *testing.T, method, url string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// mustAPI is api that fails the test unless the answer is a 2xx.
func mustAPI(t *testing.T, method, url string, body any) []byte {
	t.Helper()
	code, out := api(t, method, url, body)
	if code/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, url, code, out)
	}
	return out
}

// status reads a service's status from a registry's HTTP API.
func status(t *testing.T, base, service string) (registry.ServiceStatus, error) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/service/" + service + "/status")
	if err != nil {
		return registry.ServiceStatus{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return registry.ServiceStatus{}, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var st registry.ServiceStatus
	return st, json.Unmarshal(b, &st)
}

// pinned returns the live pinned instances of a status (pending, starting
// or running), by ID.
func pinned(st registry.ServiceStatus) map[string]registry.InstanceStatus {
	out := map[string]registry.InstanceStatus{}
	for _, in := range st.Instances {
		if in.OnDemand || in.Compute == "" {
			continue
		}
		switch in.State {
		case registry.StatePending, registry.StateStarting, registry.StateRunning:
			out[in.ID] = in
		}
	}
	return out
}

// waitRunning waits until the service has want running pinned instances
// on compute and no other live pinned one, and returns the status.
func waitRunning(t *testing.T, base, service, compute string, want int, timeout time.Duration) registry.ServiceStatus {
	t.Helper()
	var st registry.ServiceStatus
	eventually.Succeeds(t, timeout, func() error {
		var err error
		if st, err = status(t, base, service); err != nil {
			return err
		}
		live := pinned(st)
		cs := st.Computes[compute]
		if cs.Running != want || len(live) != want {
			return fmt.Errorf("%s on %s: %d running, %d live pinned, want %d (%+v)", service, compute, cs.Running, len(live), want, cs)
		}
		return nil
	})
	return st
}

// addService registers the hello demo under another name.
func (n *network) addService(name string) {
	n.t.Helper()
	cfg := fmt.Sprintf(`{"CpuReq":100,"MemoryReq":32,"Exec":{"Command":%q}}`, n.bin["hello"])
	path := filepath.Join(n.t.TempDir(), name+".json")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		n.t.Fatal(err)
	}
	n.mustCLI("add", path, name)
}

// namedAllocator starts a process allocator called name, with labels and
// further flags.
func (n *network) namedAllocator(name, labels string, extra ...string) *proctest.Proc {
	n.t.Helper()
	return n.allocator(name, launch.Allocator{Labels: labels, Extra: append([]string{"-name", name}, extra...)})
}

// killInstance kills every process of an instance (its proxy and the
// service), as a crash would.
func killInstance(t *testing.T, id string) {
	t.Helper()
	pids := pidsWithEnv(instenv.InstanceID + "=" + id)
	if len(pids) == 0 {
		t.Fatalf("no process of instance %s", id)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestDesiredCountOnALabelledCompute(t *testing.T) {
	n := newNetwork(t)
	n.registry()
	n.member("registry-2")
	n.member("registry-3")
	a1 := n.namedAllocator("a1", "site=a")
	n.namedAllocator("a2", "site=a")
	n.namedAllocator("b1", "site=b")
	n.addHello()
	base := n.api

	// An on-demand instance, started by a request: desired state must
	// neither count it nor stop it.
	_, proxyURL := n.proxy()
	hello(t, proxyURL, time.Minute)
	onDemand := n.instances("hello")
	if len(onDemand) != 1 || !onDemand[0].OnDemand {
		t.Fatalf("want one on-demand instance, have %+v", onDemand)
	}

	mustAPI(t, "POST", base+"/compute", map[string]string{"name": "site-a", "connector": "physarum:labels?site=a"})
	start := time.Now()
	mustAPI(t, "POST", base+"/service/hello/scale", map[string]any{"number": 4, "compute": "site-a"})
	st := waitRunning(t, base, "hello", "site-a", 4, 30*time.Second)
	t.Logf("scale 0 -> 4 on site-a: running after %s", time.Since(start).Round(time.Millisecond))
	if st.RunningResources != 4 || st.Desired != 4 || st.OnDemand != 1 {
		t.Errorf("status: running_resources %d, desired %d, on demand %d; want 4, 4, 1", st.RunningResources, st.Desired, st.OnDemand)
	}
	for _, in := range pinned(st) {
		if in.NodeName != "a1" && in.NodeName != "a2" {
			t.Errorf("instance %s of site-a runs on %s", in.ID, in.NodeName)
		}
	}
	if out := n.mustCLI("status", "hello"); !strings.Contains(out, "4/4") {
		t.Errorf("registry-cli status hello does not say 4/4:\n%s", out)
	}

	// A crashed instance is brought back.
	var victim string
	for id := range pinned(st) {
		victim = id
		break
	}
	killInstance(t, victim)
	eventually.Succeeds(t, 30*time.Second, func() error {
		st, err := status(t, base, "hello")
		if err != nil {
			return err
		}
		live := pinned(st)
		in, same := live[victim]
		switch {
		case st.Computes["site-a"].Running != 4:
			return fmt.Errorf("%d running", st.Computes["site-a"].Running)
		case same && in.Restarts == 0:
			return fmt.Errorf("instance %s not restarted yet", victim)
		}
		return nil
	})

	// An allocator dies with its share: once its lease has run out, the
	// other node of the compute runs all four.
	st, _ = status(t, base, "hello")
	onA1 := 0
	for _, in := range pinned(st) {
		if in.NodeName == "a1" {
			onA1++
		}
	}
	a1.Kill()
	lost := time.Now()
	eventually.Succeeds(t, 45*time.Second, func() error {
		st, err := status(t, base, "hello")
		if err != nil {
			return err
		}
		onA2 := 0
		for _, in := range pinned(st) {
			if in.NodeName == "a2" && in.State == registry.StateRunning {
				onA2++
			}
		}
		if live := len(pinned(st)); onA2 != 4 || live != 4 {
			return fmt.Errorf("%d running on a2, %d live pinned", onA2, live)
		}
		return nil
	})
	t.Logf("allocator a1 (%d instances, lease 3 s) killed: 4 running on a2 after %s", onA1, time.Since(lost).Round(time.Millisecond))

	// It comes back and adopts its instances, which survived it: the
	// surplus is stopped within a pass or so.
	a1.Restart()
	a1.WaitOutput(launch.AllocatorReady, 30*time.Second)
	var above time.Duration
	var since time.Time
	eventually.Succeeds(t, 60*time.Second, func() error {
		st, err := status(t, base, "hello")
		if err != nil {
			return err
		}
		live := len(pinned(st))
		switch {
		case live > 4 && since.IsZero():
			since = time.Now()
		case live <= 4 && !since.IsZero():
			above += time.Since(since)
			since = time.Time{}
		}
		if live != 4 || st.Computes["site-a"].Running != 4 || !since.IsZero() {
			return fmt.Errorf("%d live pinned", live)
		}
		return nil
	})
	if onA1 > 0 && above == 0 {
		t.Log("a1's instances did not come back with it (none above the desired count was seen)")
	}
	if above > 15*time.Second {
		t.Errorf("above the desired count for %s after a1 came back; want at most about one pass", above)
	}

	// Scale to 0: every pinned instance goes, the on-demand one stays.
	mustAPI(t, "POST", base+"/service/hello/scale", map[string]any{"number": 0, "compute": "site-a"})
	waitRunning(t, base, "hello", "site-a", 0, 30*time.Second)
	st, _ = status(t, base, "hello")
	if !slices.ContainsFunc(st.Instances, func(in registry.InstanceStatus) bool { return in.ID == onDemand[0].ID }) {
		t.Errorf("scale to 0 stopped the on-demand instance %s", onDemand[0].ID)
	}
}

func TestLeaderDeathDuringAScaleIsFinishedByAnother(t *testing.T) {
	n := newNetwork(t)
	first := n.registry()
	regs := map[string]*proctest.Proc{"registry": first}
	apis := map[string]string{"registry": n.api}
	for _, name := range []string{"registry-2", "registry-3"} {
		regs[name] = n.member(name)
		apis[name] = n.api
	}
	n.api = apis["registry"]
	n.namedAllocator("n1", "")
	n.namedAllocator("n2", "")
	n.addHello()
	mustAPI(t, "POST", n.api+"/service/hello/scale", map[string]any{"number": 1})
	waitRunning(t, n.api, "hello", registry.ComputePhysarum, 1, 30*time.Second)

	leader := ""
	eventually.Succeeds(t, 10*time.Second, func() error {
		for name, p := range regs {
			if strings.Contains(p.Stderr()+p.Stdout(), control.LeadsLine) {
				leader = name
				return nil
			}
		}
		return fmt.Errorf("no registry-service says it leads")
	})
	var other string
	for name := range regs {
		if name != leader {
			other = name
			break
		}
	}
	// Watch the count from a survivor all along: it must never pass 6.
	var mu sync.Mutex
	most := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if st, err := status(t, apis[other], "hello"); err == nil {
				mu.Lock()
				most = max(most, len(pinned(st)))
				mu.Unlock()
			}
		}
	}()
	mustAPI(t, "POST", apis[other]+"/service/hello/scale", map[string]any{"number": 6})
	regs[leader].Kill()
	killed := time.Now()
	waitRunning(t, apis[other], "hello", registry.ComputePhysarum, 6, 60*time.Second)
	t.Logf("leader %s killed during scale 1 -> 6: 6 running after %s", leader, time.Since(killed).Round(time.Millisecond))
	close(stop)
	<-done
	if most > 6 {
		t.Errorf("up to %d live pinned instances seen; want never more than 6", most)
	}
}

func TestConcurrentScalesEndAtTheLastWritten(t *testing.T) {
	n := newNetwork(t)
	n.registry()
	n.namedAllocator("n1", "", "-cpus", "1", "-memory", "512")
	n.namedAllocator("n2", "", "-cpus", "1", "-memory", "512")
	n.addHello()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var answers []registry.Desired
	for c := range 2 {
		wg.Go(func() {
			for i := range 10 {
				_, out := api(t, "POST", n.api+"/service/hello/scale", map[string]any{"number": 2 + (c*10+i)%5})
				var a struct{ Desired registry.Desired }
				if json.Unmarshal(out, &a) == nil && a.Desired.Service != "" {
					mu.Lock()
					answers = append(answers, a.Desired)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(answers) != 20 {
		t.Fatalf("%d of 20 scales answered", len(answers))
	}
	last := answers[0]
	for _, d := range answers {
		if d.Revision > last.Revision {
			last = d
		}
	}
	st := waitRunning(t, n.api, "hello", registry.ComputePhysarum, last.Number, 60*time.Second)
	if cs := st.Computes[registry.ComputePhysarum]; cs.Desired != last.Number || !cs.SetAt.Equal(last.SetAt) {
		t.Errorf("desired %d set at %s; the last scale written asked %d at %s", cs.Desired, cs.SetAt, last.Number, last.SetAt)
	}
	// No node is ever over-committed: what its record says is free
	// never goes below zero.
	for _, node := range n.nodes() {
		if node.FreeCPU < 0 || node.FreeMemory < 0 {
			t.Errorf("node %s over-committed: %d millicores, %d MiB free", node.Name, node.FreeCPU, node.FreeMemory)
		}
	}
}

func (n *network) nodes() []registry.Node {
	n.t.Helper()
	var out []registry.Node
	if err := json.Unmarshal([]byte(n.mustCLI("-json", "nodes")), &out); err != nil {
		n.t.Fatal(err)
	}
	return out
}

// TestSeedExampleRequests sends the example requests of seeds 000 and 001
// (their httpie lines, as JSON) to a real network. Their images cannot be
// pulled here, so the service definitions also carry ServiceInfo's Exec,
// which the format allows in the same object; a connector that answers is
// an allocator's own -connector-listen.
func TestSeedExampleRequests(t *testing.T) {
	n := newNetwork(t)
	n.registry()
	connector := "127.0.0.1:" + strconv.Itoa(freeport.T(t))
	n.namedAllocator("n1", "")
	n.namedAllocator("edge1", "", "-connector-listen", connector)
	base := n.api

	// Seed 000: computes.
	mustAPI(t, "POST", base+"/compute", map[string]string{"name": "localdc", "connector": "http://localhost:7051"})
	mustAPI(t, "PUT", base+"/compute/local", map[string]string{"connector": "http://" + connector})
	var computes map[string]registry.ComputeInfo
	if err := json.Unmarshal(mustAPI(t, "GET", base+"/compute", nil), &computes); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localdc", "local", "physarum", "n1", "edge1"} {
		if _, ok := computes[name]; !ok {
			t.Errorf("GET /compute lacks %s: %v", name, computes)
		}
	}

	// Seed 001: a service in the connector's format, updated, scaled.
	exec := map[string]any{"Command": n.bin["hello"]}
	code, out := api(t, "POST", base+"/service", map[string]any{
		"name": "helloworld", "image": "tutum/hello-world:latest", "ports": []string{"8080", "8081"},
		"environment": map[string]string{"VAR_A": "value", "VAR_B": "value"}, "Exec": exec, "CpuReq": 100, "MemoryReq": 32,
	})
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("POST /service: %d %s", code, out)
	}
	mustAPI(t, "PUT", base+"/service/helloworld", map[string]any{
		"image": "panamax/hello-world-php:latest", "command": "/run.sh", "ports": []string{"8080", "8082"},
		"environment": map[string]string{"VAR_A": "value", "VAR_B": "value"}, "Exec": exec, "CpuReq": 100, "MemoryReq": 32,
	})
	var svc map[string]any
	if err := json.Unmarshal(mustAPI(t, "GET", base+"/service/helloworld", nil), &svc); err != nil {
		t.Fatal(err)
	}
	if svc["image"] != "panamax/hello-world-php:latest" || svc["command"] != "/run.sh" {
		t.Errorf("GET /service/helloworld after PUT: %v", svc)
	}
	mustAPI(t, "POST", base+"/service/helloworld/scale", map[string]any{"number": 3})
	st := waitRunning(t, base, "helloworld", registry.ComputePhysarum, 3, 30*time.Second)
	if st.RunningResources != 3 {
		t.Errorf("GET /service/helloworld/status: running_resources %d, want 3", st.RunningResources)
	}

	// Seed 000's scale, as httpie sends it (number=3 is the string "3"),
	// on a compute that is an external connector: an allocator's own
	// connector door, driven through seed 001's protocol.
	n.addService("myservice")
	mustAPI(t, "POST", base+"/service/myservice/scale", `{"number": "3", "compute": "local"}`)
	eventually.Succeeds(t, 45*time.Second, func() error {
		st, err := status(t, base, "myservice")
		if err != nil {
			return err
		}
		onEdge := 0
		for _, in := range pinned(st) {
			if in.NodeName == "edge1" && in.Compute == "edge1" && in.State == registry.StateRunning {
				onEdge++
			}
		}
		if onEdge != 3 || st.Computes["local"].Running != 3 {
			return fmt.Errorf("%d running on edge1, connector compute says %d (%+v)", onEdge, st.Computes["local"].Running, st.Computes["local"])
		}
		return nil
	})
	// The connector door itself answers seed 001's status.
	var cst struct {
		Running int `json:"running_resources"`
	}
	if err := json.Unmarshal(mustAPI(t, "GET", "http://"+connector+"/service/myservice/status", nil), &cst); err != nil || cst.Running != 3 {
		t.Errorf("connector status: %+v %v", cst, err)
	}
}

// TestBadControlRequestsChangeNothing sends what an operator might get
// wrong to a real registry: each is a 4xx with {"code","message"}, and the
// desired count stays as it was.
func TestBadControlRequestsChangeNothing(t *testing.T) {
	n := newNetwork(t)
	n.registry()
	n.addHello()
	base := n.api
	mustAPI(t, "POST", base+"/service/hello/scale", map[string]any{"number": 0})
	before, err := status(t, base, "hello")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
	}{
		{"unknown compute", "POST", "/service/hello/scale", `{"number": 2, "compute": "nowhere"}`, 404},
		{"negative number", "POST", "/service/hello/scale", `{"number": -1}`, 400},
		{"non-numeric number", "POST", "/service/hello/scale", `{"number": "three"}`, 400},
		{"number above -max-scale", "POST", "/service/hello/scale", `{"number": 1001}`, 400},
		{"unknown service", "POST", "/service/nope/scale", `{"number": 1}`, 404},
		{"malformed JSON", "POST", "/service/hello/scale", `{"number": 1`, 400},
		{"body over the limit", "POST", "/service/hello/scale", `{"number": 1, "compute": "` + strings.Repeat("x", 2<<20) + `"}`, 413},
		{"bad connector", "POST", "/compute", `{"name": "c", "connector": "ftp://x"}`, 400},
		{"builtin compute", "DELETE", "/compute/physarum", ``, 409},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			code, out := api(t, tc.method, base+tc.path, body)
			var e struct{ Code, Message string }
			if code != tc.code || json.Unmarshal(out, &e) != nil || e.Code == "" || e.Message == "" {
				t.Errorf("%s %s: %d %s; want %d with {code, message}", tc.method, tc.path, code, out, tc.code)
			}
		})
	}
	after, err := status(t, base, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if after.Desired != before.Desired || len(after.Computes) != len(before.Computes) {
		t.Errorf("bad requests changed desired state: %+v, then %+v", before.Computes, after.Computes)
	}
}

// TestCrashingServiceBacksOff scales a service whose every instance exits
// at once: the reconciler retries with growing waits, not in a loop, and
// status says why.
func TestCrashingServiceBacksOff(t *testing.T) {
	n := newNetwork(t)
	reg := n.registry()
	n.namedAllocator("n1", "")
	cfg := `{"CpuReq":100,"MemoryReq":32,"Exec":{"Command":"sh","Args":["-c","echo crashing; exit 3"]}}`
	path := filepath.Join(t.TempDir(), "crash.json")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n.mustCLI("add", path, "crash")
	mustAPI(t, "POST", n.api+"/service/crash/scale", map[string]any{"number": 1})
	var st registry.ServiceStatus
	eventually.Succeeds(t, 60*time.Second, func() error {
		var err error
		if st, err = status(t, n.api, "crash"); err != nil {
			return err
		}
		cs := st.Computes[registry.ComputePhysarum]
		if cs.LastFailure == "" || cs.BackoffUntil.IsZero() {
			return fmt.Errorf("status does not say it backs off yet: %+v", cs)
		}
		return nil
	})
	t.Logf("status while backing off: %+v", st.Computes[registry.ComputePhysarum])
	// The first failure is retried at once, the next after 2 s, then 4 s:
	// from the first wait (seen above) to the fourth failed start takes at
	// least about 6 s; a tight loop would make them in well under one.
	first := time.Now()
	eventually.Succeeds(t, 90*time.Second, func() error {
		if n := strings.Count(reg.Stderr()+reg.Stdout(), "could not start a pinned instance"); n < 4 {
			return fmt.Errorf("%d failed starts so far", n)
		}
		return nil
	})
	if took := time.Since(first); took < 5*time.Second {
		t.Errorf("four failed starts within %s of the first wait; want a growing backoff, not a loop", took)
	}
}
