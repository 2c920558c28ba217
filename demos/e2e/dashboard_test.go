package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/physarum-p2p/physarum/common/browsertest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry-service/ui"
)

// The dashboard in headless Chromium against a real network (issue 16):
// what it shows is read from the rendered DOM, what it does goes through
// the public API with the token, and without the token it offers nothing.

// registryWith starts the first registry-service with extra flags.
func (n *network) registryWith(extra ...string) *proctest.Proc {
	n.t.Helper()
	dir := n.t.TempDir()
	r := launch.Registry{
		Node:    launch.Node{KeyFile: filepath.Join(dir, "key"), Port: freeport.T(n.t), AddrFile: filepath.Join(dir, "addr")},
		DataDir: filepath.Join(dir, "data"), UnsafeNoFsync: true, Extra: extra,
	}
	n.reg = proctest.Start(n.t, "registry", n.bin["registry-service"], r.Args(), n.env)
	n.api = r.APIURL()
	n.boot = n.reg.Ready(launch.RegistryReady, time.Minute, r.AddrFile)
	n.env = append(n.env, nodeflags.EnvBootstraps+"="+n.boot)
	return n.reg
}

// delayedAllocator starts a named allocator whose every write is delayed
// by d: the RTT between two of them is about the sum of their delays.
func (n *network) delayedAllocator(name, labels string, d time.Duration) *proctest.Proc {
	n.t.Helper()
	env := n.env
	if d > 0 {
		n.env = append(slices.Clip(env), nodeflags.EnvNetDelay+"="+d.String())
	}
	defer func() { n.env = env }()
	return n.namedAllocator(name, labels)
}

func TestDashboardShowsTheNetworkAndActsWithAToken(t *testing.T) {
	n := newNetwork(t)
	if browsertest.Path() == "" {
		t.Skip("browser test skipped: " + browsertest.ErrNoBrowser.Error())
	}
	start := time.Now()
	token := "dashboard-test-token-0123456789"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := n.registryWith("-api-token-file", tokenFile, "-api-public-read")
	if !strings.Contains(reg.Stdout(), "dashboard on "+n.api+"/ui/") {
		t.Errorf("the startup lines do not link the dashboard:\n%s", reg.Stdout())
	}
	// Three sites: here, 5 ms and 20 ms away (RTTs of about 5, 20 and 25 ms).
	delays := map[string]time.Duration{"near": 0, "mid": 5 * time.Millisecond, "far": 20 * time.Millisecond}
	for _, name := range []string{"near", "mid", "far"} {
		n.delayedAllocator(name, "site="+name, delays[name])
	}
	n.addService("alpha")
	n.addService("beta")
	auth := "Bearer " + token
	mustAPIAuth(t, auth, "POST", n.api+"/service/alpha/scale", map[string]any{"number": 2})
	mustAPIAuth(t, auth, "POST", n.api+"/service/beta/scale", map[string]any{"number": 1})
	waitRunning(t, n.api, "alpha", "physarum", 2, 20*time.Second)
	st := waitRunning(t, n.api, "beta", "physarum", 1, 20*time.Second)
	t.Logf("network up in %s", time.Since(start).Round(time.Millisecond))

	ctx := browsertest.T(t, 1280, 800)
	browsertest.Do(t, ctx, chromedp.Navigate(n.api+"/ui/"))
	browsertest.WaitFor(t, ctx, "the first render", "document.body.dataset.ready", 10*time.Second)
	browsertest.WaitFor(t, ctx, "three nodes", "document.querySelectorAll('tr[data-node]').length === 3", 10*time.Second)
	names := browsertest.Eval[[]string](t, ctx, "[...document.querySelectorAll('tr[data-node]')].map(e => e.dataset.node)")
	if strings.Join(names, ",") != "far,mid,near" {
		t.Errorf("nodes on the page: %v", names)
	}
	running := func(svc string) string {
		return fmt.Sprintf(`(document.querySelector('[data-service=%q] .running') || {}).textContent`, svc)
	}
	browsertest.WaitFor(t, ctx, "alpha 2 and beta 1 running", running("alpha")+" === '2' && "+running("beta")+" === '1'", 10*time.Second)

	// Without the token: no action control on the page, and a write is 401.
	if c := browsertest.Eval[int](t, ctx, "document.querySelectorAll('.action').length"); c != 0 {
		t.Errorf("%d action controls without a token", c)
	}
	if code, out := api(t, "POST", n.api+"/service/alpha/scale", map[string]any{"number": 3}); code != 401 {
		t.Errorf("a POST without the token: %d %s", code, out)
	}

	// With the token: scale alpha to 3 through the page, and see it without a reload.
	browsertest.Do(t, ctx, chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Evaluate[chromedp.Void]("document.getElementById('token-form').requestSubmit()"))
	form := `[data-service="alpha"] tr[data-compute="physarum"] form`
	browsertest.WaitFor(t, ctx, "the scale control", fmt.Sprintf("document.querySelector('%s input')", form), 10*time.Second)
	// Set and submit in one script: the page re-renders the form when
	// data arrives, so a node found by one CDP call may be gone by the next.
	browsertest.Do(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		window.kept = document.body;
		const form = document.querySelector('%s');
		form.querySelector('input').value = '3';
		form.requestSubmit();
	})()`, form)))
	browsertest.WaitFor(t, ctx, "alpha running 3", running("alpha")+" === '3'", 20*time.Second)
	if !browsertest.Eval[bool](t, ctx, "window.kept === document.body") {
		t.Error("the page was reloaded")
	}
	waitRunning(t, n.api, "alpha", "physarum", 3, 10*time.Second)

	// A crash: its event appears in the events view.
	id := st.Instances[0].ID
	before := browsertest.Eval[int](t, ctx, "Math.max(0, ...[...document.querySelectorAll('#event-list li[data-index]')].map(e => +e.dataset.index))")
	killInstance(t, id)
	browsertest.WaitFor(t, ctx, "the killed instance's event", fmt.Sprintf(
		`[...document.querySelectorAll('#event-list li[data-key="beta/%s"]')].some(e => +e.dataset.index > %d)`, id, before), 20*time.Second)

	// Last, so that the allocators have had time to measure each other.
	checkHeatmap(t, ctx, delays)
	t.Logf("done in %s", time.Since(start).Round(time.Millisecond))
}

// checkHeatmap compares the heatmap's cells with the simulated RTTs
// (within 30 %, or 4 ms), waiting for the page's 10 s reload where a
// pair is not measured yet.
func checkHeatmap(t *testing.T, ctx context.Context, delays map[string]time.Duration) {
	t.Helper()
	eventually.Succeeds(t, 25*time.Second, func() error {
		cells := browsertest.Eval[map[string]string](t, ctx, ui.HeatmapCellsJS)
		if bad := heatmapErrors(cells, delays); len(bad) > 0 {
			return fmt.Errorf("heatmap: %s (cells %v)", strings.Join(bad, "; "), cells)
		}
		return nil
	})
}

func heatmapErrors(cells map[string]string, delays map[string]time.Duration) []string {
	var bad []string
	for a, da := range delays {
		for b, db := range delays {
			if a == b {
				continue
			}
			want := float64(da+db) / float64(time.Millisecond)
			got, err := strconv.ParseFloat(cells[a+">"+b], 64)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s→%s: no figure", a, b))
				continue
			}
			if math.Abs(got-want) > math.Max(4, want*0.3) {
				bad = append(bad, fmt.Sprintf("%s→%s: %.1f ms, want about %.0f", a, b, got, want))
			}
		}
	}
	return bad
}

// mustAPIAuth is mustAPI with an Authorization header.
func mustAPIAuth(t *testing.T, auth, method, url string, body any) []byte {
	t.Helper()
	j, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, out)
	}
	return out
}
