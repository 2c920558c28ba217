package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/physarum-p2p/physarum/common/browsertest"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/registry"
)

type options struct {
	bin        string
	screenshot string
	sizes      []int
	runs       int
}

// network is a registry-service and its allocators on loopback.
type network struct {
	dir, api, boot string
	env            []string
	procs          []*launch.Proc
}

func run(ctx context.Context, o options, out io.Writer) error {
	if browsertest.Path() == "" {
		return browsertest.ErrNoBrowser
	}
	if o.screenshot != "" {
		if err := screenshot(ctx, o, out); err != nil {
			return err
		}
	}
	for _, n := range o.sizes {
		if err := measure(ctx, o, n, out); err != nil {
			return fmt.Errorf("%d nodes: %w", n, err)
		}
	}
	return nil
}

func start(ctx context.Context, o options) (*network, error) {
	dir, err := os.MkdirTemp("", "dashboard-")
	if err != nil {
		return nil, err
	}
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	n := &network{dir: dir, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"P2P_PSK=" + hex.EncodeToString(b), "PHYSARUM_FAST_TIMING=1"}}
	r := launch.Registry{
		Node:    launch.Node{KeyFile: filepath.Join(dir, "registry.key"), AddrFile: filepath.Join(dir, "registry.addr")},
		DataDir: filepath.Join(dir, "registry"), UnsafeNoFsync: true,
	}
	p, err := n.spawn("registry", filepath.Join(o.bin, "registry-service"), r.Args(), n.env)
	if err != nil {
		return n, err
	}
	n.api = r.APIURL()
	if n.boot, err = p.Ready(ctx, launch.RegistryReady, time.Minute, r.AddrFile); err != nil {
		return n, err
	}
	n.env = append(n.env, "P2P_BOOTSTRAPS="+n.boot)
	return n, nil
}

func (n *network) spawn(name, bin string, args, env []string) (*launch.Proc, error) {
	p, err := launch.Start(launch.Cmd{Name: name, Path: bin, Args: args, Env: env,
		OutFile: filepath.Join(n.dir, name+".out"), ErrFile: filepath.Join(n.dir, name+".err")})
	if err == nil {
		n.procs = append(n.procs, p)
	}
	return p, err
}

// allocators starts them in batches of 10, each batch once the last is ready.
func (n *network) allocators(ctx context.Context, o options, names []string, labels map[string]string, delay map[string]string, extra ...string) error {
	for i := 0; i < len(names); i += 10 {
		var batch []*launch.Proc
		for _, name := range names[i:min(i+10, len(names))] {
			a := launch.Allocator{
				Node: launch.Node{KeyFile: filepath.Join(n.dir, name+".key")}, Name: name, Labels: labels[name],
				DataDir: filepath.Join(n.dir, name), Runtime: "process", Proxy: filepath.Join(o.bin, "proxy"), Extra: extra,
			}
			env := n.env
			if d := delay[name]; d != "" {
				env = append(slices.Clip(env), "PHYSARUM_NET_DELAY="+d)
			}
			p, err := n.spawn(name, filepath.Join(o.bin, "allocator"), a.Args(), env)
			if err != nil {
				return err
			}
			batch = append(batch, p)
		}
		for _, p := range batch {
			if err := p.WaitOutput(ctx, launch.AllocatorReady, 2*time.Minute); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
		}
	}
	return nil
}

func (n *network) close() {
	var wg sync.WaitGroup
	for _, p := range n.procs {
		wg.Go(func() { p.Stop(5 * time.Second) })
	}
	wg.Wait()
	_ = os.RemoveAll(n.dir)
}

func (n *network) call(method, path string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, n.api+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return b, nil
}

// waitNodes waits until the registry lists want nodes, each with RTTs to
// at least rtts others.
func (n *network) waitNodes(ctx context.Context, want, rtts int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var nodes []registry.Node
		b, err := n.call("GET", "/nodes", nil)
		if err == nil {
			err = json.Unmarshal(b, &nodes)
		}
		ok := err == nil && len(nodes) == want
		for _, nd := range nodes {
			ok = ok && len(nd.RTTs) >= rtts
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("list nodes: %w", err)
			}
			return fmt.Errorf("%d of %d nodes listed, not all with RTTs to %d others, after %s", len(nodes), want, rtts, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (n *network) addService(o options, name string, cpu, soft, hard int) error {
	_, err := n.call("POST", "/service", map[string]any{"name": name, "command": filepath.Join(o.bin, "hello"),
		"CpuReq": cpu, "MemoryReq": 32, "NetworkSoftReq": map[string]int{"RTT": soft}, "NetworkHardReq": map[string]int{"RTT": hard}})
	return err
}

// screenshot takes the docs' picture: three sites, six allocators, three
// services, one of them chosen for its RTT limits on the heatmap.
func screenshot(ctx context.Context, o options, out io.Writer) error {
	n, err := start(ctx, o)
	if n != nil {
		defer n.close()
	}
	if err != nil {
		return err
	}
	names := []string{"paris-1", "paris-2", "frankfurt-1", "frankfurt-2", "montreal-1", "montreal-2"}
	labels, delay := map[string]string{}, map[string]string{}
	for _, name := range names {
		site, _, _ := strings.Cut(name, "-")
		labels[name] = "site=" + site
		delay[name] = map[string]string{"paris": "2ms", "frankfurt": "6ms", "montreal": "40ms"}[site]
	}
	if err := n.allocators(ctx, o, names, labels, delay, "-cpus", "2", "-memory", "2048"); err != nil {
		return err
	}
	for _, s := range []struct {
		name            string
		cpu, soft, hard int
		count           int
	}{{"hello", 100, 20, 50, 3}, {"checkout", 250, 10, 30, 2}, {"reports", 500, 0, 0, 1}} {
		if err := n.addService(o, s.name, s.cpu, s.soft, s.hard); err != nil {
			return err
		}
		if _, err := n.call("POST", "/service/"+s.name+"/scale", map[string]any{"number": s.count}); err != nil {
			return err
		}
	}
	if err := n.waitNodes(ctx, len(names), len(names)-1, time.Minute); err != nil {
		return err
	}
	time.Sleep(3 * time.Second) // the instances start, their events arrive
	bctx, cancel, err := browsertest.Start(ctx, 1280, 800)
	if err != nil {
		return err
	}
	defer cancel()
	tctx, tcancel := context.WithTimeout(bctx, time.Minute)
	defer tcancel()
	err = chromedp.Do(tctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(n.api+"/ui/"),
		chromedp.Poll[chromedp.Void]("document.body.dataset.ready && document.querySelector('#heatmap g[data-from]')"),
		chromedp.SetValue(chromedp.CSS("#rtt-service"), "checkout"),
		chromedp.Evaluate[chromedp.Void]("document.getElementById('rtt-service').dispatchEvent(new Event('change'))"),
		chromedp.Sleep(500*time.Millisecond))
	if err != nil {
		return err
	}
	png, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.screenshot, png, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s (%d bytes): 1280×800, %d allocators on 3 sites, 3 services\n", o.screenshot, len(png), len(names))
	return nil
}

// load is one page load's figures.
type load struct {
	FirstPaint float64 `json:"fcp"`
	Complete   float64 `json:"ready"`
	Bytes      float64 `json:"bytes"`
	Cells      int     `json:"cells"`
	Elements   int     `json:"elements"`
}

const loadJS = `(() => {
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const nav = performance.getEntriesByType('navigation')[0];
  let bytes = nav.transferSize;
  for (const r of performance.getEntriesByType('resource')) if (!r.name.includes('/v1/events')) bytes += r.transferSize;
  return {fcp: fcp ? fcp.startTime : -1, ready: +document.body.dataset.ready, bytes,
    cells: document.querySelectorAll('#heatmap g[data-from]').length ** 2,
    elements: document.querySelectorAll('#heatmap *').length};
})()`

// measure starts the bench's scale network at size nodes (process
// allocators, -cpus 0.1, -memory 256) with 10 services, 2 instances each
// on the network, and loads the page o.runs times in a fresh browser.
func measure(ctx context.Context, o options, size int, out io.Writer) error {
	n, err := start(ctx, o)
	if n != nil {
		defer n.close()
	}
	if err != nil {
		return err
	}
	var names []string
	for i := range size {
		names = append(names, fmt.Sprintf("node-%03d", i))
	}
	if err := n.allocators(ctx, o, names, nil, nil, "-cpus", "0.1", "-memory", "256"); err != nil {
		return err
	}
	for i := range 10 {
		name := fmt.Sprintf("svc-%d", i)
		if err := n.addService(o, name, 10, 20, 50); err != nil {
			return err
		}
		if _, err := n.call("POST", "/service/"+name+"/scale", map[string]any{"number": 2}); err != nil {
			return err
		}
	}
	if err := n.waitNodes(ctx, size, min(size-1, 8), 2*time.Minute); err != nil {
		return err
	}
	var loads []load
	for range o.runs {
		l, err := loadOnce(ctx, n.api+"/ui/")
		if err != nil {
			return err
		}
		loads = append(loads, l)
	}
	med := func(f func(load) float64) float64 {
		v := make([]float64, len(loads))
		for i, l := range loads {
			v[i] = f(l)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	fmt.Fprintf(out, "%d nodes: first paint %.0f ms, complete page %.0f ms (medians of %d cold loads, max %.0f ms); %.0f bytes transferred; %d heatmap cells in %d elements\n",
		size, med(func(l load) float64 { return l.FirstPaint }), med(func(l load) float64 { return l.Complete }), len(loads),
		slices.MaxFunc(loads, func(a, b load) int { return int(a.Complete - b.Complete) }).Complete, med(func(l load) float64 { return l.Bytes }), loads[0].Cells, loads[0].Elements)
	return nil
}

// loadOnce loads the page in a fresh headless browser (an empty cache).
func loadOnce(ctx context.Context, url string) (load, error) {
	bctx, cancel, err := browsertest.Start(ctx, 1280, 800)
	if err != nil {
		return load{}, err
	}
	defer cancel()
	tctx, tcancel := context.WithTimeout(bctx, time.Minute)
	defer tcancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(url), chromedp.Poll[chromedp.Void]("document.body.dataset.ready")); err != nil {
		return load{}, err
	}
	return chromedp.Run(tctx, chromedp.Evaluate[load](loadJS))
}
