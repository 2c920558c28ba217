package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// check is one request the report makes through the client proxy.
type check struct {
	service, path, want string
	via                 string // how it is reached, when not directly
}

var checks = []check{
	{service: "hello", path: "/", want: "hello from"},
	{service: "calculator", path: "/add?a=2&b=3", want: `"result":5`},
	{service: "sensor", path: "/reading", want: `"verdict"`},
}

type result struct {
	check
	ok         bool
	first      time.Duration
	warm       []time.Duration
	lastStatus int
	lastBody   string
}

// instanceView and nodeView are what registry-cli -json prints.
type instanceView struct {
	ID, Service, Node, State, Runtime string
}

type nodeView struct {
	PeerID string
	RTT    float64
}

const warmRequests = 20

// report sends the requests, prints the table, and says whether every
// demo service answered.
func (d *demo) report(ctx context.Context) bool {
	say("sending requests through the client proxy (the first ones start instances on demand)")
	hc := &http.Client{Timeout: 30 * time.Second}
	var results []*result
	allOK := true
	for _, c := range checks {
		r := &result{check: c}
		r.first, r.lastStatus, r.lastBody = get(ctx, hc, d.proxy+"/"+c.service+c.path)
		r.ok = r.lastStatus == http.StatusOK && strings.Contains(r.lastBody, c.want)
		for i := 0; r.ok && i < warmRequests; i++ {
			took, status, body := get(ctx, hc, d.proxy+"/"+c.service+c.path)
			if status != http.StatusOK || !strings.Contains(body, c.want) {
				r.ok, r.lastStatus, r.lastBody = false, status, body
				break
			}
			r.warm = append(r.warm, took)
		}
		allOK = allOK && r.ok
		results = append(results, r)
	}
	pipelineOK := results[len(results)-1].ok
	results = append(results,
		&result{check: check{service: "aggregator", via: "via sensor"}, ok: pipelineOK},
		&result{check: check{service: "analytics", via: "via aggregator"}, ok: pipelineOK})
	d.printReport(ctx, results)
	return allOK
}

func get(ctx context.Context, hc *http.Client, url string) (time.Duration, int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err.Error()
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return time.Since(start), 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return time.Since(start), resp.StatusCode, string(b)
}

func (d *demo) printReport(ctx context.Context, results []*result) {
	var insts []instanceView
	var nodes []nodeView
	_ = d.cliJSON(ctx, &insts, "instances")
	_ = d.cliJSON(ctx, &nodes, "nodes")
	rtt := map[string]float64{}
	for _, n := range nodes {
		rtt[n.PeerID] = n.RTT
	}
	siteOf := map[string]string{}
	for _, s := range sites {
		siteOf[s.peer] = s.name
	}
	placed := map[string][]string{}
	for _, in := range insts {
		where := siteOf[in.Node]
		if where == "" {
			where = in.Node
		}
		placed[in.Service] = append(placed[in.Service], fmt.Sprintf("%s (%.1f ms, %s)", where, rtt[in.Node], in.State))
	}

	fmt.Println()
	fmt.Printf("Physarum demo: %d services on 3 allocators, runtime %s, network up in %s\n\n", len(results), d.runtime, since(d.start))
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVICE\tANSWERED\tFIRST REQUEST\tWARM P50\tWARM P99\tPLACED ON (RTT FROM THE PROXY, STATE)")
	for _, r := range results {
		answered := "yes"
		if !r.ok {
			answered = fmt.Sprintf("NO (%d: %s)", r.lastStatus, oneLine(r.lastBody))
		}
		first, p50, p99 := "-", "-", "-"
		if r.via != "" {
			first = r.via
		} else {
			first = ms(r.first)
			if len(r.warm) > 0 {
				p50, p99 = ms(percentile(r.warm, 50)), ms(percentile(r.warm, 99))
			}
		}
		where := strings.Join(placed[r.service], ", ")
		if where == "" {
			where = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.service, answered, first, p50, p99, where)
	}
	_ = w.Flush()
	fmt.Println()
	fmt.Println("The first request to each service found no instance, so the client proxy had one started and")
	fmt.Println("waited for it: on an allocator within the service's soft RTT, the one with the most room left")
	fmt.Println("(the nearest among equals), which spreads services over the sites. The aggregator (soft RTT")
	fmt.Println("5 ms, hard 10 ms) was placed by the sensor's own proxy, within 10 ms of the sensor.")
	fmt.Println()
}

func (d *demo) howTo() {
	fmt.Println("The network keeps running. Try:")
	fmt.Printf("  open %s/ui/     (the dashboard: nodes, RTTs, services, instances, events)\n", d.api)
	fmt.Printf("  curl %s/hello/\n", d.proxy)
	fmt.Printf("  curl '%s/calculator/mul?a=6&b=7'\n", d.proxy)
	fmt.Printf("  curl %s/sensor/reading\n", d.proxy)
	fmt.Printf("  curl '%s/sensor/reading?value=100'     (a spike: analytics says anomaly)\n", d.proxy)
	cli := fmt.Sprintf("P2P_PSK=$(cat %s/network.psk) P2P_BOOTSTRAPS=%s %s/registry-cli", d.dir, d.boot, d.o.bin)
	fmt.Printf("  %s instances\n", cli)
	fmt.Printf("  %s nodes\n", cli)
	if d.o.autoscale {
		fmt.Printf("  %s autoscale hello     (the policy and its last decision)\n", cli)
	}
	if d.o.rollout {
		fmt.Printf("  %s rollouts hello      (the last rollout)\n", cli)
		fmt.Printf("  %s history hello       (the versions kept)\n", cli)
	}
	for _, s := range sites {
		if s.daemon != nil {
			fmt.Printf("  DOCKER_HOST=%s docker images     (%s's own Docker daemon)\n", s.daemon.Host, s.name)
		}
	}
	fmt.Println("Metrics (Prometheus text; demos/prometheus.yml scrapes them):")
	fmt.Printf("  client proxy  http://127.0.0.1:%d/metrics\n", d.proxyP)
	fmt.Printf("  registry      http://127.0.0.1:%d/metrics\n", d.regProm)
	for _, s := range sites {
		fmt.Printf("  %-12s  http://127.0.0.1:%d/metrics\n", s.name, s.prom)
	}
	fmt.Printf("Logs: %s\n", d.dir)
	fmt.Println("Press Ctrl-C to stop the network.")
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}
