package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/proxy/forward"
	"github.com/physarum-p2p/physarum/registry"
)

// runProxy measures what a client proxy + service proxy pair costs against
// calling the same hello instance directly on its SERVICE_PORT, in the
// same run: added latency of a small GET, throughput of small GETs with 1
// and 8 clients and of 1 MiB bodies, the CPU a small GET costs each process,
// and the proxies' memory. Small GETs also go a third way, from
// forward.Transport's RoundTripper in this process to the instance's proxy,
// which says what the client proxy's hop costs.
func runProxy(ctx context.Context, r *run) error {
	n, err := r.s.newNetwork(r, "proxy", true)
	if err != nil {
		return err
	}
	defer n.close()
	r.sc.Setup = "1 registry-service, 1 allocator (process runtime, 2 CPUs), 1 client proxy; hello (process runtime) " +
		"started on demand by the first request; " + n.timing() + ". The load generator (this process) shares the machine's cores " +
		"with both proxies and hello."
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	allocs, err := n.startAllocators(ctx, allocSpec{name: "alloc-1", runtime: "process", cpus: "2", memory: 2048})
	if err != nil {
		return err
	}
	cp, err := n.startProxy(ctx, "client-proxy")
	if err != nil {
		return err
	}
	if err := n.addProcessService(ctx, "hello", 0, 0); err != nil {
		return err
	}
	hc := newHTTPClient(60 * time.Second)
	defer hc.CloseIdleConnections()
	through := cp.url + "/hello/"
	if code, body, err := get(ctx, hc, through); err != nil || code != http.StatusOK {
		return fmt.Errorf("first request through the client proxy: %d %s %v", code, strings.TrimSpace(body), err) //nolint:errorlint // err may be nil: the status says what went wrong
	}
	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	ins, err := c.reg.ListInstances(ctx, "hello")
	if err != nil || len(ins) != 1 {
		return fmt.Errorf("want 1 instance of hello after the first request, have %d (%v)", len(ins), err) //nolint:errorlint // err may be nil: the status says what went wrong
	}
	env, instProxy, err := allocs[0].instanceEnv(ins[0].ID)
	if err != nil {
		return err
	}
	sp := env["SERVICE_PORT"]
	if _, err := strconv.Atoi(sp); err != nil {
		return fmt.Errorf("instance %s has no SERVICE_PORT in its state.json", ins[0].ID)
	}
	direct := "http://127.0.0.1:" + sp + "/"
	helloPid := 0
	for _, pid := range launch.InstancePIDs(ins[0].ID) {
		if pid != instProxy {
			helloPid = pid
		}
	}
	// The same instance from forward.Transport's RoundTripper in this
	// process, with no client proxy: what an application that embeds it
	// gets, and what the client proxy's hop costs.
	embedded, err := embeddedClient(ctx, c.node, ins[0])
	if err != nil {
		return err
	}
	defer embedded.CloseIdleConnections()
	inproc := "libp2p://" + ins[0].PeerID + "/"
	if code, body, err := get(ctx, embedded, inproc); err != nil || code != http.StatusOK || !strings.Contains(body, "hello from") {
		return fmt.Errorf("GET %s through the RoundTripper: %d %q %v", inproc, code, body, err) //nolint:errorlint // err may be nil: the status says what went wrong
	}
	// cpuOf counts the CPU of every process a request passes through, so
	// that each run says what a request costs each of them.
	cpuOf := func() procCPU {
		var p procCPU
		p.add("load generator", os.Getpid())
		p.add("hello", helloPid)
		p.add("client proxy", cp.p.Pid())
		p.add("instance's proxy", instProxy)
		return p
	}
	r.say("hello instance %s: service port %s, its proxy pid %d; client proxy pid %d", ins[0].ID, sp, instProxy, cp.p.Pid())
	for _, u := range []string{direct, through} {
		if code, body, err := get(ctx, hc, u); err != nil || code != http.StatusOK || !strings.Contains(body, "hello from") {
			return fmt.Errorf("GET %s: %d %q %v", u, code, body, err) //nolint:errorlint // err may be nil: the status says what went wrong
		}
	}

	// Memory right after start (one request served), before any load.
	time.Sleep(time.Second)
	memFig := func(name string, pid int, peak bool, target *Target, anchor string) {
		rss, hwm, err := memOf(pid)
		if err != nil {
			r.failf("memory of %s: %v", name, err)
			return
		}
		v := rss
		if peak {
			v = hwm
		}
		r.fig(Figure{Name: name, Value: mb(v), Unit: "MB", Target: target, Anchor: anchor})
	}
	memFig("client proxy RSS, idle", cp.p.Pid(), false, lt(25, "< 25 MB idle"), "PhysarumSM ≈ 25 MB")
	memFig("instance's proxy RSS, idle", instProxy, false, lt(25, "< 25 MB idle"), "PhysarumSM ≈ 25 MB")

	smallVia := func(hc *http.Client, url string) func() (time.Duration, error) {
		return func() (time.Duration, error) { return do(ctx, hc, http.MethodGet, url, nil) }
	}
	small := func(url string) func() (time.Duration, error) { return smallVia(hc, url) }
	// Warm both ways up: connections, streams, buffers.
	for range r.pick(300, 100) {
		if _, err := do(ctx, hc, http.MethodGet, direct, nil); err != nil {
			return fmt.Errorf("warm-up direct: %w", err)
		}
		if _, err := do(ctx, hc, http.MethodGet, through, nil); err != nil {
			return fmt.Errorf("warm-up through the pair: %w", err)
		}
		if _, err := do(ctx, embedded, http.MethodGet, inproc, nil); err != nil {
			return fmt.Errorf("warm-up through the RoundTripper: %w", err)
		}
	}

	// Added latency: one client alternates a direct GET and the same GET
	// through the pair, so that both see the same machine.
	pairs := r.pick(3000, 400)
	r.say("added latency: %d small GETs each way, alternating direct and through the pair", pairs)
	var dl, tl, el dist
	for range pairs {
		d, err := do(ctx, hc, http.MethodGet, direct, nil)
		if err != nil {
			return fmt.Errorf("direct GET: %w", err)
		}
		t, err := do(ctx, hc, http.MethodGet, through, nil)
		if err != nil {
			return fmt.Errorf("GET through the pair: %w", err)
		}
		e, err := do(ctx, embedded, http.MethodGet, inproc, nil)
		if err != nil {
			return fmt.Errorf("GET through the RoundTripper: %w", err)
		}
		dl, tl, el = append(dl, d), append(tl, t), append(el, e)
	}
	r.fig(Figure{Name: "small GET through the pair, p50", Value: us(tl.p50()), Unit: "µs", Samples: len(tl),
		Baseline: &Baseline{Name: "direct GET p50", Value: us(dl.p50()), Unit: "µs"}})
	r.fig(Figure{Name: "small GET through the pair, p99", Value: us(tl.p99()), Unit: "µs", Samples: len(tl),
		Baseline: &Baseline{Name: "direct GET p99", Value: us(dl.p99()), Unit: "µs"}})
	r.fig(Figure{Name: "added latency of the pair, p50", Value: us(tl.p50() - dl.p50()), Unit: "µs", Samples: len(tl),
		Target: lt(300, "< 300 µs median"), Baseline: &Baseline{Name: "direct GET p50", Value: us(dl.p50()), Unit: "µs"},
		Anchor: "PhysarumSM ≈ 1.0 ms"})
	r.fig(Figure{Name: "added latency of the pair, p99", Value: us(tl.p99() - dl.p99()), Unit: "µs", Samples: len(tl),
		Target: lt(1000, "< 1 ms p99"), Baseline: &Baseline{Name: "direct GET p99", Value: us(dl.p99()), Unit: "µs"},
		Anchor: "PhysarumSM ≈ 2.4 ms"})

	r.fig(Figure{Name: "added latency of the instance's proxy alone (RoundTripper in the client), p50", Value: us(el.p50() - dl.p50()),
		Unit: "µs", Samples: len(el), Baseline: &Baseline{Name: "direct GET p50", Value: us(dl.p50()), Unit: "µs"}})
	r.fig(Figure{Name: "added latency of the instance's proxy alone (RoundTripper in the client), p99", Value: us(el.p99() - dl.p99()),
		Unit: "µs", Samples: len(el), Baseline: &Baseline{Name: "direct GET p99", Value: us(dl.p99()), Unit: "µs"}})

	// Throughput: alternate short free-running phases of each way, so a
	// machine whose speed drifts treats both alike.
	rounds := r.pick(10, 3)
	for _, clients := range []int{1, 8} {
		r.say("small GET throughput, %s: %d rounds of 200 ms per way", clientsText(clients), rounds)
		var ds, ts, es phases
		dcpu, tcpu, ecpu := cpuOf(), cpuOf(), cpuOf()
		for range rounds {
			dcpu.during(func() { ds.phase(ctx, clients, 200*time.Millisecond, small(direct)) })
			tcpu.during(func() { ts.phase(ctx, clients, 200*time.Millisecond, small(through)) })
			ecpu.during(func() { es.phase(ctx, clients, 200*time.Millisecond, smallVia(embedded, inproc)) })
		}
		checkPhases(r, "small GETs direct", &ds)
		checkPhases(r, "small GETs through the pair", &ts)
		checkPhases(r, "small GETs through the RoundTripper", &es)
		dc := dcpu.perRequest(len(ds.lat))
		cpuFigs(r, "through the pair, small GETs, "+clientsText(clients), dc, tcpu.perRequest(len(ts.lat)),
			"client proxy", "instance's proxy", "hello", "load generator")
		cpuFigs(r, "through the RoundTripper, small GETs, "+clientsText(clients), dc, ecpu.perRequest(len(es.lat)),
			"instance's proxy", "hello", "load generator")
		base := &Baseline{Name: "direct", Value: ds.rate(), Unit: "req/s"}
		anchor := ""
		if clients == 1 {
			anchor = "PhysarumSM ≈ 880 vs ≈ 9,000 req/s (≈ 10%)"
		}
		r.fig(Figure{Name: "small GETs through the pair, " + clientsText(clients), Value: ts.rate(), Unit: "req/s",
			Samples: len(ts.lat), Baseline: base, Anchor: anchor})
		r.fig(Figure{Name: "throughput through the pair / direct, small GETs, " + clientsText(clients),
			Value: 100 * ts.rate() / ds.rate(), Unit: "%", Target: ge(30, ">= 30% of direct"), Baseline: base, Anchor: anchor})
		r.fig(Figure{Name: "throughput through the RoundTripper in the client / direct (no client proxy), small GETs, " + clientsText(clients),
			Value: 100 * es.rate() / ds.rate(), Unit: "%", Samples: len(es.lat), Baseline: base})
	}

	body := bytes.Repeat([]byte("physarum"), (1<<20)/8)
	bigDirect := "http://127.0.0.1:" + sp + "/echo?raw"
	bigThrough := cp.url + "/hello/echo?raw"
	post := func(url string) func() (time.Duration, error) {
		return func() (time.Duration, error) { return do(ctx, hc, http.MethodPost, url, body) }
	}
	if _, err := post(bigThrough)(); err != nil {
		return fmt.Errorf("1 MiB POST through the pair: %w", err)
	}
	rounds = r.pick(6, 2)
	for _, clients := range []int{1, 8} {
		r.say("1 MiB bodies (POST /echo?raw, echoed back), %s: %d rounds of 500 ms per way", clientsText(clients), rounds)
		var ds, ts phases
		for range rounds {
			ds.phase(ctx, clients, 500*time.Millisecond, post(bigDirect))
			ts.phase(ctx, clients, 500*time.Millisecond, post(bigThrough))
		}
		checkPhases(r, "1 MiB bodies direct", &ds)
		checkPhases(r, "1 MiB bodies through the pair", &ts)
		base := &Baseline{Name: "direct", Value: ds.rate(), Unit: "MiB/s"}
		anchor := ""
		if clients == 1 {
			anchor = "PhysarumSM ≈ 68 vs ≈ 620 MiB/s (≈ 11%)"
		}
		r.fig(Figure{Name: "1 MiB bodies through the pair, " + clientsText(clients) + " (request MiB/s; as much comes back)",
			Value: ts.rate(), Unit: "MiB/s", Samples: len(ts.lat), Baseline: base, Anchor: anchor})
		r.fig(Figure{Name: "throughput through the pair / direct, 1 MiB bodies, " + clientsText(clients),
			Value: 100 * ts.rate() / ds.rate(), Unit: "%", Target: ge(25, ">= 25% of direct"), Baseline: base, Anchor: anchor})
	}

	memFig("client proxy RSS after 1 MiB bodies", cp.p.Pid(), false, nil, "")
	memFig("client proxy peak RSS (VmHWM) under 1 MiB bodies", cp.p.Pid(), true, lt(40, "< 40 MB under 1 MiB bodies"), "PhysarumSM up to ≈ 60 MB")
	memFig("instance's proxy RSS after 1 MiB bodies", instProxy, false, nil, "")
	memFig("instance's proxy peak RSS (VmHWM) under 1 MiB bodies", instProxy, true, lt(40, "< 40 MB under 1 MiB bodies"), "PhysarumSM up to ≈ 60 MB")
	if after, err := c.reg.ListInstances(ctx, "hello"); err == nil && len(after) != 1 {
		r.notef("%d instances of hello ran by the end (the client proxy asked for more under load); "+
			"the direct baseline always used the first", len(after))
	}
	r.notef("Latency pairs alternate one direct GET and one GET through the pair on kept-alive connections; "+
		"added latency = p(through) - p(direct). Throughput alternates %d phases per way (200 ms small, 500 ms 1 MiB).", r.pick(10, 3))
	return nil
}

// cpuFigs records the CPU a request costs each of the named processes one
// way, beside what it costs the service and the load generator direct.
func cpuFigs(r *run, what string, direct, through map[string]float64, names ...string) {
	for _, name := range names {
		f := Figure{Name: "CPU per request " + what + ": " + name, Value: through[name], Unit: "µs"}
		// The proxies are off the direct path: what they spend meanwhile is
		// their background work, no baseline.
		if d := direct[name]; !strings.Contains(name, "proxy") && d > 0 {
			f.Baseline = &Baseline{Name: "direct", Value: d, Unit: "µs"}
		}
		r.fig(f)
	}
}

// checkPhases records failed requests of one way.
func checkPhases(r *run, what string, p *phases) {
	if p.errs > 0 {
		r.failf("%s: %d of %d requests failed; first: %v", what, p.errs, p.errs+len(p.lat), p.firstErr)
	}
}

func clientsText(n int) string {
	if n == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", n)
}

// embeddedClient is an http.Client whose requests go from node, over the
// private network, straight to the instance's proxy: forward.Transport's
// RoundTripper, as an application that embeds it would use it.
func embeddedClient(ctx context.Context, node *p2p.Node, in registry.Instance) (*http.Client, error) {
	id, err := peer.Decode(in.PeerID)
	if err != nil {
		return nil, fmt.Errorf("instance %s: peer ID %q: %w", in.ID, in.PeerID, err)
	}
	ai := peer.AddrInfo{ID: id}
	for _, a := range in.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			ai.Addrs = append(ai.Addrs, m)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := node.Host().Connect(cctx, ai); err != nil {
		return nil, fmt.Errorf("connect to the instance's proxy %s: %w", id, err)
	}
	tr := forward.NewTransport(node.Host(), forward.TransportOptions{})
	return &http.Client{Transport: tr.RoundTripper(), Timeout: 60 * time.Second}, nil
}
