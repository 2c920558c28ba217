package main

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProxyFiguresKeepTheirNames fails when scen_proxy.go renames a
// figure the ceiling scenario divides by its own.
func TestProxyFiguresKeepTheirNames(t *testing.T) {
	b, err := os.ReadFile("scen_proxy.go")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, c := range proxyVsCeiling {
		name := c.proxy
		for _, n := range []int{1, 8} {
			name = strings.TrimSuffix(name, ", "+clientsText(n))
		}
		if name != c.proxy {
			name += ", " // the proxy scenario appends clientsText
		}
		if !strings.Contains(src, `"`+name) {
			t.Errorf("scen_proxy.go no longer names a figure %q (the ceiling looks for %q)", name, c.proxy)
		}
	}
}

func TestCeilingFractions(t *testing.T) {
	proxy := &Scenario{Name: "proxy", Status: "ok", Figures: []Figure{
		{Name: "added latency of the pair, p50", Value: 300, Unit: "µs", Baseline: &Baseline{Name: "direct GET p50", Value: 150, Unit: "µs"}},
		{Name: "small GETs through the pair, 1 client", Value: 2000, Unit: "req/s", Baseline: &Baseline{Name: "direct", Value: 8000, Unit: "req/s"}},
		{Name: "1 MiB bodies through the pair, 1 client (request MiB/s; as much comes back)", Value: 100, Unit: "MiB/s",
			Baseline: &Baseline{Name: "direct", Value: 1000, Unit: "MiB/s"}},
		{Name: "1 MiB bodies through the pair, 8 clients (request MiB/s; as much comes back)", Value: notMeasured, Unit: "MiB/s"},
	}}
	s := &suite{res: &Results{Scenarios: []*Scenario{proxy}}}
	sc := &Scenario{Name: "ceiling"}
	r := &run{s: s, sc: sc}
	ceilingFractions(r, map[string]float64{
		figCeilRTTp50: 60, figCeilRTTp99: 200, figCeilSmall1: 10000, figCeilSmall8: 20000, figCeilBig1: 400, figCeilBig8: 500,
	})
	got := map[string]Figure{}
	for _, f := range sc.Figures {
		got[f.Name] = f
	}
	want := map[string]float64{
		"added latency of the pair, p50 / raw stream round trip":       5,
		"small GETs through the pair, 1 client / raw stream ceiling":   20,
		"1 MiB bodies through the pair, 1 client / raw stream ceiling": 25,
	}
	if len(got) != len(want) {
		t.Errorf("figures %v, want %d", sc.Figures, len(want))
	}
	for name, v := range want {
		f, ok := got[name]
		if !ok || math.Abs(f.Value-v) > 1e-9 {
			t.Errorf("%s = %v (found %v), want %v", name, f.Value, ok, v)
		}
	}
	big := got["1 MiB bodies through the pair, 1 client / raw stream ceiling"]
	if big.Met == nil || *big.Met || !strings.Contains(big.Note, "10.0 % of direct") || !strings.Contains(big.Note, "25.0 % of the raw stream ceiling") {
		t.Errorf("1 MiB figure: met %v, note %q", big.Met, big.Note)
	}
	// Missing and unmeasured proxy figures are said, not compared.
	if n := len(sc.Notes); n != 4 {
		t.Errorf("notes %q: want 3 for the figures left out and 1 about the comparison", sc.Notes)
	}

	// Without the proxy scenario, a note says so.
	sc = &Scenario{Name: "ceiling"}
	ceilingFractions(&run{s: &suite{res: &Results{}}, sc: sc}, map[string]float64{})
	if len(sc.Figures) != 0 || len(sc.Notes) != 1 {
		t.Errorf("without the proxy scenario: %+v", sc)
	}
}

// TestQuickCeilingScenario runs the ceiling scenario alone, quick, against
// a freshly built streamecho.
func TestQuickCeilingScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process; skipped with -short")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./demos/bench/streamecho")
	build.Dir = moduleRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	work := t.TempDir()
	s := &suite{o: options{bin: bin, dir: work, quick: true, logLevel: "warn"}, dir: work, res: &Results{}}
	var def scenario
	for _, d := range scenarios {
		if d.name == "ceiling" {
			def = d
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc := s.runScenario(ctx, def)
	s.cleanup()
	if sc.Status != "ok" {
		t.Fatalf("status %s: %q", sc.Status, sc.Failures)
	}
	if len(sc.Figures) != 9 {
		t.Errorf("%d figures, want 9: %+v", len(sc.Figures), sc.Figures)
	}
	for _, f := range sc.Figures {
		if !f.Measured() || f.Value <= 0 {
			t.Errorf("figure %q = %v", f.Name, f.Value)
		}
	}
	if n := otherProcsUnder(bin); n > 0 {
		t.Errorf("%d streamecho processes are still running", n)
	}
	if _, err := os.Stat(filepath.Join(work, "ceiling", "streamecho.log")); err != nil {
		t.Errorf("streamecho's log: %v", err)
	}
}
