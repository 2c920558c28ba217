package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/physarum-p2p/physarum/common/browsertest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/registry-service/ui"
)

// fakeAPI answers the routes the page reads with fixed records (three
// nodes that measured each other, but c never measured b), takes scales
// with the token, and streams the events pushed into events.
type fakeAPI struct {
	mu       sync.Mutex
	running  int
	scales   []string
	rollouts []string // promote and rollback calls, by path
	events   chan string
}

const fakeToken = "a-token-of-sixteen-chars"

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	node := func(name, id string, rtts string) string {
		return fmt.Sprintf(`{"PeerID":%q,"Name":%q,"Labels":{"site":%q},"Runtimes":["process"],"CPU":2000,"Memory":1024,"FreeCPU":1500,"FreeMemory":512,"Instances":1,"RTTs":[%s]}`,
			id, name, name[:1], rtts)
	}
	switch r.URL.Path {
	case "/nodes":
		fmt.Fprintf(w, "[%s,%s,%s]", node("a1", "A", `{"PeerID":"B","RTT":20},{"PeerID":"C","RTT":40}`),
			node("b1", "B", `{"PeerID":"A","RTT":21},{"PeerID":"C","RTT":60}`), node("c1", "C", `{"PeerID":"A","RTT":41}`))
	case "/service":
		fmt.Fprint(w, `{"hello":{"name":"hello","image":"","command":"/bin/hello","CpuReq":100,"MemoryReq":32,"NetworkSoftReq":{"RTT":25},"NetworkHardReq":{"RTT":50}},
			"echo":{"name":"echo","image":"echo:1","DockerHash":"echo:1","CpuReq":0,"MemoryReq":0,"NetworkSoftReq":{"RTT":0},"NetworkHardReq":{"RTT":0}}}`)
	case "/status":
		fmt.Fprintf(w, `{"hello":{"service":"hello","running_resources":%d,"desired":%d,"computes":{"physarum":{"desired":%d,"running":%d}},
			"instances":[{"id":"hello-1","node":"A","node_name":"a1","state":"running","started":"2026-01-01T00:00:00Z","compute":"physarum","version":2},
				{"id":"hello-0","node":"B","node_name":"b1","state":"running","started":"2025-12-01T00:00:00Z","compute":"physarum","version":1,"standby":true}],
			"rollout":{"service":"hello","strategy":{"type":"blue-green","rollback_window":"10m0s"},"from_version":1,"to_version":2,"state":"running",
			"message":"1 of 2 instances at version 2","started":"2026-01-01T00:00:00Z","progress":"2026-01-01T00:00:00Z","switched":"2026-01-01T00:00:05Z"},
			"route":{"service":"hello","version":2,"switched":true}},
			"echo":{"service":"echo","running_resources":0,"computes":{},"instances":[{"id":"0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f","node":"B","node_name":"b1","state":"running","started":"2026-01-01T00:00:00Z"}]}}`,
			f.running, f.running, f.running, f.running)
	case "/instances":
		fmt.Fprint(w, `[{"uuid":"0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f","service":"echo","state":"running","want":"running","addrs":{"multiaddrs":["/ip4/127.0.0.1/tcp/4001"]}}]`)
	case "/service/hello/scale":
		if r.Header.Get("Authorization") != "Bearer "+fakeToken {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"code":"unauthorized","message":"wrong token"}`)
			return
		}
		b, _ := io.ReadAll(r.Body)
		f.scales = append(f.scales, string(b))
		var body struct{ Number int }
		_ = json.Unmarshal(b, &body)
		f.running = body.Number
		fmt.Fprint(w, `{}`)
	case "/service/hello/promote", "/service/hello/rollback":
		if r.Header.Get("Authorization") != "Bearer "+fakeToken || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"code":"unauthorized","message":"wrong token"}`)
			return
		}
		f.rollouts = append(f.rollouts, r.URL.Path)
		fmt.Fprint(w, `{"message":"ok","rollout":{}}`)
	case "/v1/events":
		f.mu.Unlock()
		defer f.mu.Lock()
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, `{"type":"heartbeat","index":5}`)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case ev := <-f.events:
				fmt.Fprintln(w, ev)
				w.(http.Flusher).Flush()
			}
		}
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"code":"not_found"}`)
	}
}

// hover moves the pointer over the heatmap's cell from → to and returns
// the tooltip's text ("" when it is hidden).
func hover(t *testing.T, ctx context.Context, from, to string) string {
	t.Helper()
	return browsertest.Eval[string](t, ctx, fmt.Sprintf(`(() => {
		const svg = document.querySelector('#heatmap svg'), cols = JSON.parse(svg.dataset.cols);
		const pad = +svg.dataset.pad, cell = +svg.dataset.cell;
		svg.scrollIntoView({block: 'center'});
		const p = new DOMPoint(pad + (cols.indexOf(%q) + 0.5) * cell, pad + (cols.indexOf(%q) + 0.5) * cell).matrixTransform(svg.getScreenCTM());
		document.elementFromPoint(p.x, p.y).dispatchEvent(new PointerEvent('pointermove', {bubbles: true, clientX: p.x, clientY: p.y}));
		const tip = document.querySelector('#heatmap .tip');
		return tip.hidden ? '' : tip.textContent;
	})()`, to, from))
}

func TestPageRendersTheAPIAndActsOnlyWithAToken(t *testing.T) {
	api := &fakeAPI{running: 1, events: make(chan string, 10)}
	srv := httptest.NewServer(ui.Mount(api))
	t.Cleanup(srv.Close) // after the browser's cleanup, which ends the event stream
	ctx := browsertest.T(t, 1280, 800)

	browsertest.Do(t, ctx, chromedp.Navigate(srv.URL+"/ui/"))
	browsertest.WaitFor(t, ctx, "the first render", "document.body.dataset.ready", 5*time.Second)
	if got := browsertest.Eval[string](t, ctx, "document.title"); got != "Physarum dashboard" {
		t.Errorf("title %q", got)
	}
	names := browsertest.Eval[[]string](t, ctx, "[...document.querySelectorAll('tr[data-node]')].map(e => e.dataset.node)")
	if strings.Join(names, ",") != "a1,b1,c1" {
		t.Errorf("nodes %v", names)
	}
	cells := browsertest.Eval[map[string]string](t, ctx, ui.HeatmapCellsJS)
	want := map[string]string{"a1>b1": "20", "a1>c1": "40", "b1>a1": "21", "b1>c1": "60", "c1>a1": "41", "c1>b1": ""}
	if fmt.Sprint(cells) != fmt.Sprint(want) {
		t.Errorf("heatmap cells %v, want %v", cells, want)
	}
	running := browsertest.Eval[string](t, ctx, `document.querySelector('[data-service="hello"] .running').textContent`)
	if running != "1" {
		t.Errorf("hello running %q", running)
	}
	if n := browsertest.Eval[int](t, ctx, "document.querySelectorAll('.action').length"); n != 0 {
		t.Errorf("%d action controls without a token", n)
	}

	// The last rollout in the Services view, the instances' versions, the rollout topic.
	rollout := browsertest.Eval[string](t, ctx, `document.querySelector('[data-service="hello"] .rollout[data-state="running"]')?.textContent || ''`)
	for _, want := range []string{"version 1 → 2", "running", "1 of 2 instances at version 2", "serving: version 2 and later"} {
		if !strings.Contains(rollout, want) {
			t.Errorf("hello's rollout %q, want %q in it", rollout, want)
		}
	}
	if n := browsertest.Eval[int](t, ctx, `document.querySelectorAll('[data-service="echo"] .rollout').length`); n != 0 {
		t.Errorf("%d rollouts shown for echo, which has none", n)
	}
	if v := browsertest.Eval[string](t, ctx, `document.querySelector('tr[data-instance="hello-1"] .version').textContent`); v != "2" {
		t.Errorf("hello-1's version %q", v)
	}
	if s := browsertest.Eval[string](t, ctx, `document.querySelector('tr[data-instance="hello-0"] .standby')?.textContent || ''`); s != "running, standby" {
		t.Errorf("hello-0 (the old set) shown as %q, want standing by", s)
	}
	if !browsertest.Eval[bool](t, ctx, `!!document.querySelector('#topics input[data-topic="rollout"]')`) {
		t.Error("no rollout topic in the events' filter")
	}

	// One tooltip for the whole heatmap, following the pointer; no element per cell.
	if n := browsertest.Eval[int](t, ctx, "document.querySelectorAll('#heatmap title, #heatmap rect, #heatmap .tip').length"); n != 2 {
		t.Errorf("%d rects and tooltips in the heatmap, want 2 (the hatch pattern's and the one tooltip)", n)
	}
	tip := hover(t, ctx, "a1", "b1")
	if hover(t, ctx, "c1", "b1") != "c1 → b1: not measured" {
		t.Error("c1 → b1 not shown as not measured")
	}
	if tip != "a1 → b1: 20 ms" {
		t.Errorf("heatmap tooltip %q", tip)
	}

	// An instance's detail: a launched one's addresses.
	browsertest.Do(t, ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('tr[data-instance="0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"]').click()`))
	browsertest.WaitFor(t, ctx, "the instance's addresses", `document.querySelector('tr.detail') && document.querySelector('tr.detail').textContent.includes('/ip4/127.0.0.1/tcp/4001')`, 5*time.Second)

	// A service's RTT limits on the heatmap: hello's hard 50 ms crosses b1 → c1 out.
	browsertest.Do(t, ctx, chromedp.Evaluate[chromedp.Void](`(() => {
		const sel = document.getElementById('rtt-service');
		sel.value = 'hello';
		sel.dispatchEvent(new Event('change'));
	})()`))
	browsertest.WaitFor(t, ctx, "hard RTT drawn", `document.querySelector('#heatmap path.beyond-hard')`, 5*time.Second)
	if tip := hover(t, ctx, "b1", "c1"); tip != "b1 → c1: 60 ms, beyond hard RTT 50 ms" {
		t.Errorf("b1 → c1's tooltip %q", tip)
	}
	if tip := hover(t, ctx, "a1", "b1"); tip != "a1 → b1: 20 ms, within soft RTT 25 ms" {
		t.Errorf("a1 → b1's tooltip %q", tip)
	}

	// An event appears, and the page loads again on it.
	api.events <- `{"id":"6-0","index":6,"time":"2026-01-01T00:00:01Z","topic":"instance","type":"updated","key":"hello/hello-1","object":{"ID":"hello-1","State":"running","Restarts":1}}`
	browsertest.WaitFor(t, ctx, "the event", `document.querySelector('#event-list li[data-key="hello/hello-1"]')`, 5*time.Second)
	api.events <- `{"id":"7-0","index":7,"time":"2026-01-01T00:00:02Z","topic":"rollout","type":"updated","key":"hello","object":{"service":"hello","from_version":1,"to_version":2,"state":"succeeded"}}`
	browsertest.WaitFor(t, ctx, "the rollout event", `document.querySelector('#event-list li[data-topic="rollout"][data-key="hello"]')?.textContent.includes('1 → 2 succeeded')`, 5*time.Second)

	// A wrong token: the write is refused and actions go off again.
	browsertest.Do(t, ctx, chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"), chromedp.Evaluate[chromedp.Void]("document.getElementById('token-form').requestSubmit()"))
	browsertest.WaitFor(t, ctx, "scale controls with a token", "document.querySelector('.scale-number')", 5*time.Second)
	browsertest.Do(t, ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-service="hello"] tr[data-compute="physarum"] form').requestSubmit()`))
	browsertest.WaitFor(t, ctx, "actions off after a 401", "document.querySelectorAll('.action').length === 0 && !document.getElementById('notice').hidden", 5*time.Second)

	// The right token: scale hello to 3 through the page.
	browsertest.Do(t, ctx, chromedp.SendKeys(chromedp.CSS("#token"), fakeToken), chromedp.Evaluate[chromedp.Void]("document.getElementById('token-form').requestSubmit()"))
	browsertest.WaitFor(t, ctx, "scale controls", `document.querySelector('[data-service="hello"] tr[data-compute="physarum"] input')`, 5*time.Second)
	// Set and submit in one script: the page re-renders its services when
	// their data arrives, and a node found by one CDP call may be gone by
	// the next ("No node with given id found").
	browsertest.Do(t, ctx, chromedp.Evaluate[chromedp.Void](`(() => {
		const form = document.querySelector('[data-service="hello"] tr[data-compute="physarum"] form');
		form.querySelector('input').value = '3';
		form.requestSubmit();
	})()`))
	browsertest.WaitFor(t, ctx, "hello running 3", `document.querySelector('[data-service="hello"] .running').textContent === '3'`, 5*time.Second)
	api.mu.Lock()
	scales := api.scales
	api.mu.Unlock()
	if len(scales) != 1 || scales[0] != `{"number":3,"compute":"physarum"}` {
		t.Errorf("scales %q", scales)
	}
	if n := browsertest.Eval[int](t, ctx, "document.querySelectorAll('button.stop').length"); n != 1 {
		t.Errorf("%d stop buttons, want 1 (the launched instance)", n)
	}
	// The blue-green rollout in its window: promote and rollback; a click
	// posts with the token.
	if got := browsertest.Eval[string](t, ctx, `[...document.querySelectorAll('[data-service="hello"] .rollout button')].map(b => b.textContent).join(',')`); got != "promote,rollback" {
		t.Errorf("hello's rollout buttons %q, want promote,rollback", got)
	}
	browsertest.Do(t, ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-service="hello"] button.rollback').click()`))
	browsertest.WaitFor(t, ctx, "the rollback sent", `document.getElementById('notice').hidden`, 5*time.Second)
	eventually.Succeeds(t, 5*time.Second, func() error {
		api.mu.Lock()
		defer api.mu.Unlock()
		if strings.Join(api.rollouts, ",") != "/service/hello/rollback" {
			return fmt.Errorf("rollout actions %q", api.rollouts)
		}
		return nil
	})

	// A reload keeps the token and the events, and resumes after index 6.
	browsertest.Do(t, ctx, chromedp.Navigate(srv.URL+"/ui/"))
	browsertest.WaitFor(t, ctx, "the reloaded page", `document.body.dataset.ready && document.querySelector('#event-list li[data-key="hello/hello-1"]') && document.querySelector('.scale-number')`, 5*time.Second)
	if idx := browsertest.Eval[string](t, ctx, "sessionStorage.getItem('physarum.events.index')"); idx != "5" && idx != "7" {
		t.Errorf("kept index %q", idx)
	}
}
