package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Results is everything one run of the suite measured: results.json.
type Results struct {
	// Command is the command line that produced the results.
	Command string `json:"command"`
	// Date is when the run started (UTC).
	Date time.Time `json:"date"`
	// DurationSeconds is how long the whole run took.
	DurationSeconds float64 `json:"duration_seconds"`
	// Mode is "full" or "quick".
	Mode    string  `json:"mode"`
	Machine Machine `json:"machine"`
	// GoBench names the Go micro-benchmarks' output that make bench
	// wrote into the results directory just before this run, if any.
	GoBench string `json:"go_bench,omitempty"`
	// Scenarios in the order they ran.
	Scenarios []*Scenario `json:"scenarios"`
}

// Machine describes where the run happened.
type Machine struct {
	NProc       int     `json:"nproc"`
	CPUModel    string  `json:"cpu_model"`
	MemoryBytes uint64  `json:"memory_bytes"`
	Kernel      string  `json:"kernel"`
	GoVersion   string  `json:"go_version"`
	Docker      string  `json:"docker,omitempty"`
	LoadAvg     string  `json:"load_average_at_start"`
	OtherProcs  int     `json:"other_physarum_processes_at_start"`
	MemAvailGiB float64 `json:"mem_available_gib_at_start"`
}

// Scenario is one whole-system scenario's outcome.
type Scenario struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	// Status is ok, failed (something did not work; see Failures), or
	// interrupted.
	Status          string  `json:"status"`
	DurationSeconds float64 `json:"duration_seconds"`
	// Setup says what network ran and with which p2p timing.
	Setup    string   `json:"setup"`
	Figures  []Figure `json:"figures"`
	Failures []string `json:"failures,omitempty"`
	Notes    []string `json:"notes,omitempty"`
	// Plots lists the PNG files drawn from this scenario's figures.
	Plots []string `json:"plots,omitempty"`
}

// Figure is one measured number.
type Figure struct {
	Name string `json:"name"`
	// Value is notMeasured when the figure could not be taken:
	// results.json then has "value": null and "measured": false.
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// N is the network size, for figures measured at several sizes.
	N int `json:"n,omitempty"`
	// Samples is how many measurements the value summarizes.
	Samples int     `json:"samples,omitempty"`
	Target  *Target `json:"target,omitempty"`
	// Met says whether Value meets Target; never when it was not
	// measured.
	Met *bool `json:"met,omitempty"`
	// Baseline is the direct way measured in the same run.
	Baseline *Baseline `json:"baseline,omitempty"`
	// Anchor quotes the reference figures of SPEC.md section 10
	// (PhysarumSM, Nomad); they were not measured in this run.
	Anchor string `json:"anchor,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Target is the SPEC.md section 10 target for a figure.
type Target struct {
	// Op is "<" or ">=".
	Op    string  `json:"op"`
	Value float64 `json:"value"`
	// Text is the target as SPEC.md words it.
	Text string `json:"text"`
}

// Baseline is the direct way to do what a figure measures, in the same run.
type Baseline struct {
	Name string `json:"name"`
	// Value is notMeasured when the baseline could not be taken, as in
	// Figure.
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// notMeasured is the value of a figure that could not be taken. A 0 in
// its place would read as a measurement, and meet every "<" target.
var notMeasured = math.NaN()

// measured says whether v is a measurement: NaN (notMeasured, 0/0) and
// infinities (a ratio to nothing) are not.
func measured(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Measured says whether f's value was taken.
func (f Figure) Measured() bool { return measured(f.Value) }

// MarshalJSON writes a value that was not measured as null, with
// "measured": false beside it (JSON has no NaN) and, when it has a
// target, "met": false. A measured figure is written as the plain struct.
func (f Figure) MarshalJSON() ([]byte, error) {
	type plain Figure
	if f.Measured() {
		return json.Marshal(plain(f))
	}
	if f.Met != nil {
		f.Met = new(bool)
	}
	return json.Marshal(struct {
		plain
		Value    *float64 `json:"value"`
		Measured bool     `json:"measured"`
	}{plain: plain(f)})
}

// UnmarshalJSON reads a null value back as notMeasured.
func (f *Figure) UnmarshalJSON(b []byte) error {
	type plain Figure
	var v struct {
		plain
		Value *float64 `json:"value"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Figure(v.plain)
	f.Value = valueOf(v.Value)
	return nil
}

// MarshalJSON writes a baseline as Figure.MarshalJSON writes a figure.
func (b Baseline) MarshalJSON() ([]byte, error) {
	type plain Baseline
	if measured(b.Value) {
		return json.Marshal(plain(b))
	}
	return json.Marshal(struct {
		plain
		Value    *float64 `json:"value"`
		Measured bool     `json:"measured"`
	}{plain: plain(b)})
}

// UnmarshalJSON reads a null value back as notMeasured.
func (b *Baseline) UnmarshalJSON(data []byte) error {
	type plain Baseline
	var v struct {
		plain
		Value *float64 `json:"value"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*b = Baseline(v.plain)
	b.Value = valueOf(v.Value)
	return nil
}

func valueOf(v *float64) float64 {
	if v == nil {
		return notMeasured
	}
	return *v
}

func lt(v float64, text string) *Target { return &Target{Op: "<", Value: v, Text: text} }
func ge(v float64, text string) *Target { return &Target{Op: ">=", Value: v, Text: text} }

// meets says whether v meets t. A value that was not measured meets no
// target.
func (t *Target) meets(v float64) bool {
	if !measured(v) {
		return false
	}
	switch t.Op {
	case "<":
		return v < t.Value
	case ">=":
		return v >= t.Value
	}
	return false
}

// orNotMeasured keeps a finite v and turns NaN and infinities (0/0, a
// ratio to nothing) into notMeasured: they say the figure could not be
// taken, not that it is 0.
func orNotMeasured(v float64) float64 {
	if !measured(v) {
		return notMeasured
	}
	return v
}

// writeResults writes results.json, results.md and the plots into dir.
func writeResults(dir string, r *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	// Plots of an earlier run that this one may not redraw would sit
	// beside results.md as if they were current.
	for _, specs := range plotSpecs {
		for _, spec := range specs {
			_ = os.Remove(filepath.Join(dir, spec.file))
		}
	}
	var plotErrs []string
	for _, sc := range r.Scenarios {
		files, err := drawPlots(dir, plotted(sc))
		sc.Plots = files
		if err != nil {
			plotErrs = append(plotErrs, err.Error())
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(markdown(r)), 0o644); err != nil {
		return err
	}
	if len(plotErrs) > 0 {
		return fmt.Errorf("plots: %s", strings.Join(plotErrs, "; "))
	}
	return nil
}

// plotted is sc without the figures that were not measured, which have
// no point on a plot.
func plotted(sc *Scenario) *Scenario {
	c := *sc
	c.Figures = slices.DeleteFunc(slices.Clone(sc.Figures), func(f Figure) bool { return !f.Measured() })
	return &c
}

// machineInfo describes this machine.
func machineInfo() Machine {
	m := Machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version()}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m.GoVersion = strings.TrimSpace(string(out))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := meminfo()
	m.MemoryBytes = mem["MemTotal"] * 1024
	m.MemAvailGiB = float64(mem["MemAvailable"]) / (1 << 20)
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// meminfo reads /proc/meminfo, values in KiB (empty when unreadable).
func meminfo() map[string]uint64 {
	out, err := procFields("/proc/meminfo")
	if err != nil {
		return map[string]uint64{}
	}
	return out
}
