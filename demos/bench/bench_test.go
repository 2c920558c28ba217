package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/p2ptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(p2ptest.IgnoreLeaks(),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"))...)
}

// synthetic is a small result set with every kind of figure.
func synthetic() *Results {
	yes, no := true, false
	res := &Results{
		Command: "bench -quick", Date: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), DurationSeconds: 61, Mode: "quick",
		Machine: Machine{NProc: 2, CPUModel: "test CPU", MemoryBytes: 24 << 30, Kernel: "6.1", GoVersion: "go1.26"},
	}
	proxy := &Scenario{Name: "proxy", Title: "proxy pair", Status: "ok", Setup: "1 registry", Figures: []Figure{
		{Name: "added latency of the pair, p50", Value: 250, Unit: "µs", Samples: 100, Target: lt(300, "< 300 µs median"), Met: &yes,
			Baseline: &Baseline{Name: "direct GET p50", Value: 90, Unit: "µs"}, Anchor: "PhysarumSM ≈ 1.0 ms"},
		{Name: "throughput | ratio", Value: 12.5, Unit: "%", Target: ge(30, ">= 30% of direct"), Met: &no},
	}, Notes: []string{"a note"}}
	scale := &Scenario{Name: "scale", Title: "scale", Status: "failed", Failures: []string{"N=50: 3 allocators exited"}}
	for _, n := range []int{10, 25, 50} {
		scale.Figures = append(scale.Figures,
			Figure{Name: figVisible, N: n, Value: float64(n) / 10, Unit: "s", Target: lt(10, "< 10 s (100 nodes)"), Met: &yes},
			Figure{Name: figRSSMean, N: n, Value: 26, Unit: "MB"},
			Figure{Name: figRSSMax, N: n, Value: 28, Unit: "MB"},
			Figure{Name: figIOMean, N: n, Value: 100 * float64(n), Unit: "B/s"},
			Figure{Name: figRegIO, N: n, Value: 0, Unit: "B/s"}, // left out of the log plot
		)
	}
	res.Scenarios = []*Scenario{proxy, scale}
	return res
}

func TestWriteResults(t *testing.T) {
	dir := t.TempDir()
	if err := writeResults(dir, synthetic()); err != nil {
		t.Fatal(err)
	}
	var back Results
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(back.Scenarios) != 2 || back.Scenarios[0].Figures[0].Baseline.Value != 90 || back.Machine.NProc != 2 {
		t.Fatalf("results.json does not hold what was written: %s", b)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| proxy | added latency of the pair, p50 (n=100) | 250 µs | < 300 µs median | yes |",
		"| 250 µs | < 300 µs median | yes | direct GET p50: 90.0 µs | PhysarumSM ≈ 1.0 ms |",
		`throughput \| ratio`, "**no**", "4 of 5 targets met",
		"| figure | N=10 | N=25 | N=50 | target |",
		"| " + figVisible + " (s) | 1.00 | 2.50 | 5.00 | < 10 s (100 nodes) |",
		"![scale_rss](scale_rss.png)", "N=50: 3 allocators exited", "Scenarios with failures: scale",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	sc := back.Scenarios[1]
	if len(sc.Plots) != 3 { // visible, rss, traffic; the rest have no figures
		t.Errorf("plots %v; want scale_visible, scale_rss, scale_traffic", sc.Plots)
	}
	for _, p := range sc.Plots {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG (%v)", p, err)
		}
	}
}

// TestUnmeasuredFigureNeverMeetsItsTarget: a figure that could not be
// taken (no sample, 0/0, a ratio to nothing) is "not measured" in
// results.json and results.md, and misses its target; as a 0 it met
// every "<" target.
func TestUnmeasuredFigureNeverMeetsItsTarget(t *testing.T) {
	zero := 0.0
	yes := true
	r := &run{s: &suite{}, sc: &Scenario{Name: "registry", Title: "registry", Status: "ok"}}
	r.fig(Figure{Name: "get p50", Value: notMeasured, Unit: "ms", Target: lt(1, "< 1 ms median"),
		Baseline: &Baseline{Name: "etcd get p50", Value: notMeasured, Unit: "ms"}})
	r.fig(Figure{Name: "pair / direct", Value: 100 * 5 / zero, Unit: "%", Target: lt(200, "< 2x direct")})
	r.fig(Figure{Name: "rss mean", N: 10, Value: zero / zero, Unit: "MB", Target: lt(35, "< 35 MB")})
	r.fig(Figure{Name: "rss mean", N: 25, Value: 26, Unit: "MB", Target: lt(35, "< 35 MB")})
	r.fig(Figure{Name: "get p99", Value: 2, Unit: "ms", Target: lt(3, "< 3 ms p99")})
	for _, f := range r.sc.Figures {
		if f.Measured() != (f.Name == "get p99" || f.N == 25) {
			t.Errorf("figure %q (N=%d) = %v: measured %v", f.Name, f.N, f.Value, f.Measured())
		}
		if f.Met == nil || *f.Met != f.Measured() {
			t.Errorf("figure %q (N=%d) = %v, target %s: met %v, want %v", f.Name, f.N, f.Value, f.Target.Text,
				f.Met != nil && *f.Met, f.Measured())
		}
	}
	// Built by hand, claiming a verdict it cannot have.
	r.sc.Figures = append(r.sc.Figures, Figure{Name: "add p50", Value: notMeasured, Unit: "ms",
		Target: lt(10, "< 10 ms median"), Met: &yes})

	dir := t.TempDir()
	if err := writeResults(dir, &Results{Scenarios: []*Scenario{r.sc}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Scenarios []struct {
			Figures []map[string]any `json:"figures"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(raw.Scenarios) != 1 || len(raw.Scenarios[0].Figures) != len(r.sc.Figures) {
		t.Fatalf("results.json: %s", b)
	}
	for i, f := range raw.Scenarios[0].Figures {
		want := r.sc.Figures[i]
		switch v, ok := f["value"]; {
		case !want.Measured() && (!ok || v != nil || f["measured"] != false || f["met"] != false):
			t.Errorf("results.json, not measured: %v", f)
		case want.Measured() && (v != want.Value || f["measured"] != nil):
			t.Errorf("results.json, measured %v: %v", want.Value, f)
		}
	}
	if bl, _ := raw.Scenarios[0].Figures[0]["baseline"].(map[string]any); bl == nil || bl["value"] != nil || bl["measured"] != false {
		t.Errorf("results.json, baseline not measured: %v", bl)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Scenarios[0].Figures; got[0].Measured() || measured(got[0].Baseline.Value) || !got[4].Measured() {
		t.Errorf("read back from results.json: get p50 %v (baseline %v), get p99 %v; want not measured twice, then 2",
			got[0].Value, got[0].Baseline.Value, got[4].Value)
	}

	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| registry | get p50 | not measured | < 1 ms median | **no** |",
		"| registry | pair / direct | not measured | < 2x direct | **no** |",
		"| registry | N=10: rss mean | not measured | < 35 MB | **no** |",
		"| registry | add p50 | not measured | < 10 ms median | **no** |",
		"| get p50 | not measured | < 1 ms median | **no** | etcd get p50: not measured |",
		"| rss mean (MB) | **not measured** (missed) | 26.0 | < 35 MB |",
		"2 of 6 targets met",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var d dist
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if msec(d.p50()) != 50 || msec(d.p99()) != 99 || msec(d.at(100)) != 100 || us(d.at(1)) != 1000 || secs(d.at(100)) != 0.1 {
		t.Errorf("p50 %v ms, p99 %v ms, max %v ms, min %v µs", msec(d.p50()), msec(d.p99()), msec(d.at(100)), us(d.at(1)))
	}
	if got := (dist{7}).p99(); got != 7 {
		t.Errorf("the p99 of one sample of 7 ns = %v", got)
	}
}

// TestNothingSampledIsNotMeasured: a percentile of no samples, a rate
// over no time, a mean of nothing and the change over a soak that every
// process left are not measured: each was a 0, and met its "<" target.
func TestNothingSampledIsNotMeasured(t *testing.T) {
	var empty dist
	for _, tt := range []struct {
		name string
		v    float64
	}{
		{"p50 of no samples, ms", msec(empty.p50())},
		{"p99 of no samples, µs", us(empty.p99())},
		{"max of no samples, s", secs(empty.at(100))},
		{"difference of the p50s of no samples, µs", us(empty.p50() - empty.p50())},
		{"rate before any phase", (&phases{}).rate()},
		{"rate of samples over no time", (&phases{lat: dist{time.Millisecond}}).rate()},
		{"mean of nothing", mean(nil)},
		{"soak, RSS change when every process exited", soakChange([]int{7, 8}, nil, map[int]*soakSample{8: {rss: 9}}).rss},
		{"soak, descriptor change when every process exited", soakChange([]int{7}, nil, nil).fds},
		{"soak, thread change when every process exited", soakChange([]int{7}, nil, nil).threads},
		{"soak, largest RSS growth when every process exited", soakChange([]int{7}, nil, nil).maxGrowth},
	} {
		r := &run{s: &suite{}, sc: &Scenario{Name: "unit"}}
		r.fig(Figure{Name: tt.name, Value: tt.v, Unit: "ms", Target: lt(1, "< 1")})
		f := r.sc.Figures[0]
		if f.Measured() || *f.Met || fmtVal(f.Value, f.Unit) != "not measured" {
			t.Errorf("%s = %v (%s), met %v; want not measured, missed", tt.name, f.Value, fmtVal(f.Value, f.Unit), *f.Met)
		}
	}
}

// TestPeaks: the sampler's peaks start not measured and take the first
// value read (max and min keep a NaN).
func TestPeaks(t *testing.T) {
	hi, lo := notMeasured, notMeasured
	for _, v := range []float64{3, 5, 2} {
		hi, lo = higher(hi, v), lower(lo, v)
	}
	if hi != 5 || lo != 2 || measured(higher(notMeasured, notMeasured)) {
		t.Errorf("peaks of 3, 5, 2: highest %v, lowest %v", hi, lo)
	}
}

// TestSoakChange: the changes over a soak are taken from the processes
// that ran through it; the others count as exited.
func TestSoakChange(t *testing.T) {
	first := map[int]*soakSample{
		1: {rss: 10000, fds: 10, threads: 5},
		2: {rss: 30000, fds: 20, threads: 7},
		3: {rss: 50000, fds: 30, threads: 9}, // exits
	}
	last := map[int]*soakSample{
		1: {rss: 12000, fds: 11, threads: 5},
		2: {rss: 29000, fds: 20, threads: 8},
		4: {rss: 99999, fds: 99, threads: 99}, // started after the first snapshot
	}
	c := soakChange([]int{1, 2, 3, 4}, first, last)
	if c.exited != 2 || c.fds != 1 || c.threads != 1 || c.rss != 2.5 || c.worst != 1 || c.maxGrowth != mb(2000) {
		t.Errorf("soak change: %+v; want 2 exited, +1 descriptor, +1 thread, +2.5%% RSS, pid 1 grew most by %v MB", c, mb(2000))
	}
	// Every process that ran through shrank: the largest growth is the
	// smallest shrink, not 0.
	c = soakChange([]int{1}, map[int]*soakSample{1: {rss: 2000}}, map[int]*soakSample{1: {rss: 1000}})
	if c.exited != 0 || c.rss != -50 || c.worst != 1 || c.maxGrowth != -mb(1000) {
		t.Errorf("soak change of a shrinking process: %+v", c)
	}
}

func TestFmtVal(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		unit string
		want string
	}{
		{1234.5, "req/s", "1234 req/s"}, {12.34, "ms", "12.3 ms"}, {1.234, "s", "1.23 s"},
		{0.1234, "ms", "0.123 ms"}, {0, "ms", "0 ms"}, {3, "count", "3 count"}, {-5.5, "µs", "-5.50 µs"},
	} {
		if got := fmtVal(tt.v, tt.unit); got != tt.want {
			t.Errorf("fmtVal(%v, %q) = %q; want %q", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-only", "proxy,scale"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.quick || len(o.only) != 2 || len(o.scaleSizes) != 2 || o.scaleIdle != 5*time.Second || o.scaleFast || o.scaleSoak != 0 {
		t.Errorf("quick options: %+v", o)
	}
	if o, err := parseFlags(nil); err != nil || o.scaleSoak != 5*time.Minute || len(o.scaleSizes) != 4 {
		t.Errorf("default options: %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"-only", "nope"}, {"-scale-sizes", "0"}, {"-scale-timing", "slow"}, {"-docker", "maybe"}, {"extra"}, {"-scale-soak", "-1m"}, {"-scale-soak", "long"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

// TestQuickRegistryScenario runs one real scenario end to end, quick: a
// registry-service process, the in-process client, etcd direct and
// registry-cli calls; then checks the results and that nothing is left.
func TestQuickRegistryScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	bin := t.TempDir()
	root := moduleRoot(t)
	build := exec.Command("go", "build", "-o", bin+"/", "./registry-service", "./registry-cli", "./allocator", "./proxy", "./demos/hello")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out := t.TempDir()
	work := t.TempDir()
	o, err := parseFlags([]string{"-quick", "-only", "registry", "-docker", "off", "-bin", bin,
		"-services", filepath.Join(root, "demos", "services"), "-out", out, "-dir", work})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if code := runSuite(ctx, o); code != 0 {
		t.Errorf("runSuite: exit code %d", code)
	}
	var res Results
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Scenarios) != 1 || res.Scenarios[0].Name != "registry" || len(res.Scenarios[0].Figures) < 8 {
		t.Fatalf("results: %s", b)
	}
	for _, f := range res.Scenarios[0].Figures {
		if !f.Measured() || f.Value <= 0 {
			t.Errorf("figure %q = %v", f.Name, f.Value)
		}
	}
	if n := sweepInstances(work, bin); n > 0 {
		t.Errorf("%d instance processes were left running", n)
	}
	if n := otherProcsUnder(bin); n > 0 {
		t.Errorf("%d processes of the test's binaries are still running", n)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("find the module root: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// otherProcsUnder counts running processes whose program is in dir.
func otherProcsUnder(dir string) int {
	es, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(b), dir+"/") {
			n++
		}
	}
	return n
}
