package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// markdown renders r as results.md: the run's context, a summary of every
// target, then one section per scenario with each figure beside its target,
// its direct baseline from the same run, and the anchors of SPEC.md.
func markdown(r *Results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Physarum whole-system benchmarks\n\n")
	w("- command: `%s`\n", r.Command)
	w("- date: %s, mode %s, run time %s\n", r.Date.UTC().Format(time.RFC3339), r.Mode,
		(time.Duration(r.DurationSeconds * float64(time.Second))).Round(time.Second))
	m := r.Machine
	w("- machine: %d CPUs (%s), %.1f GiB RAM, kernel %s, %s", m.NProc, m.CPUModel,
		float64(m.MemoryBytes)/(1<<30), m.Kernel, m.GoVersion)
	if m.Docker != "" {
		w(", Docker %s", m.Docker)
	}
	w("\n- at start: load average %s, %.1f GiB available, %d other Physarum processes running on the machine\n\n",
		m.LoadAvg, m.MemAvailGiB, m.OtherProcs)
	w("Latencies are wall-clock times seen by the benchmark process, which runs on the same cores as the\n")
	w("network it measures. \"Baseline\" is the direct way measured in the same run; \"anchor\" quotes the\n")
	w("reference figures of SPEC.md section 10 (PhysarumSM, Nomad), which were not measured here.\n")
	w("MB are 10^6 bytes.\n\n")
	if r.GoBench != "" {
		w("The Go micro-benchmarks (proxy/forward, common/rtt) that `make bench` ran just before are in [%s](%s).\n\n", r.GoBench, r.GoBench)
	}

	w("## Targets\n\n")
	w("| scenario | figure | value | target | met |\n|---|---|---|---|---|\n")
	reached, total := 0, 0
	for _, sc := range r.Scenarios {
		for _, f := range sc.Figures {
			if f.Target == nil {
				continue
			}
			total++
			if _, met := verdict(f); met {
				reached++
			}
			w("| %s | %s | %s | %s | %s |\n", sc.Name, figName(f), fmtVal(f.Value, f.Unit), f.Target.Text, fmtMet(f))
		}
	}
	w("\n%d of %d targets met.\n\n", reached, total)
	if failed := failedScenarios(r); len(failed) > 0 {
		w("Scenarios with failures: %s (details in their sections).\n\n", strings.Join(failed, ", "))
	}

	for i, sc := range r.Scenarios {
		w("## %d. %s: %s\n\n", i+1, sc.Name, sc.Title)
		w("Status: **%s**, %s.", sc.Status, (time.Duration(sc.DurationSeconds * float64(time.Second))).Round(100*time.Millisecond))
		if sc.Setup != "" {
			w(" Setup: %s", sc.Setup)
		}
		w("\n\n")
		var flat, sized []Figure
		for _, f := range sc.Figures {
			if f.N > 0 {
				sized = append(sized, f)
			} else {
				flat = append(flat, f)
			}
		}
		if len(flat) > 0 {
			w("| figure | value | target | met | baseline (same run) | anchor |\n|---|---|---|---|---|---|\n")
			for _, f := range flat {
				w("| %s | %s | %s | %s | %s | %s |\n", figName(f), fmtVal(f.Value, f.Unit), targetText(f), fmtMet(f), baselineText(f), f.Anchor)
			}
			w("\n")
		}
		if len(sized) > 0 {
			b.WriteString(sizedTable(sized))
			w("\n")
		}
		for _, p := range sc.Plots {
			w("![%s](%s)\n", strings.TrimSuffix(p, ".png"), p)
		}
		if len(sc.Plots) > 0 {
			w("\n")
		}
		if len(sc.Notes) > 0 {
			w("Notes:\n\n")
			for _, n := range sc.Notes {
				w("- %s\n", mdEscape(n))
			}
			w("\n")
		}
		if len(sc.Failures) > 0 {
			w("Failures:\n\n")
			for _, f := range sc.Failures {
				w("- %s\n", mdEscape(f))
			}
			w("\n")
		}
	}
	return b.String()
}

// sizedTable pivots figures measured at several network sizes: one row per
// figure, one column per size.
func sizedTable(figs []Figure) string {
	var sizes []int
	var names []string
	byKey := map[string]Figure{}
	for _, f := range figs {
		if !slices.Contains(sizes, f.N) {
			sizes = append(sizes, f.N)
		}
		if !slices.Contains(names, f.Name) {
			names = append(names, f.Name)
		}
		byKey[f.Name+"\x00"+strconv.Itoa(f.N)] = f
	}
	slices.Sort(sizes)
	var b strings.Builder
	b.WriteString("| figure |")
	for _, n := range sizes {
		fmt.Fprintf(&b, " N=%d |", n)
	}
	b.WriteString(" target |\n|---|")
	for range sizes {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	for _, name := range names {
		var unit, target string
		for _, n := range sizes {
			if f, ok := byKey[name+"\x00"+strconv.Itoa(n)]; ok {
				unit = f.Unit
				if f.Target != nil {
					target = f.Target.Text
				}
			}
		}
		fmt.Fprintf(&b, "| %s (%s) |", name, unit)
		for _, n := range sizes {
			f, ok := byKey[name+"\x00"+strconv.Itoa(n)]
			if !ok {
				b.WriteString(" - |")
				continue
			}
			v := strings.TrimSuffix(fmtVal(f.Value, f.Unit), " "+f.Unit)
			if judged, met := verdict(f); judged && !met {
				v = "**" + v + "** (missed)"
			}
			fmt.Fprintf(&b, " %s |", v)
		}
		fmt.Fprintf(&b, " %s |\n", target)
	}
	return b.String()
}

func figName(f Figure) string {
	name := f.Name
	if f.N > 0 {
		name = fmt.Sprintf("N=%d: %s", f.N, name)
	}
	if f.Samples > 0 {
		name += fmt.Sprintf(" (n=%d)", f.Samples)
	}
	if f.Note != "" {
		name += "; " + f.Note
	}
	return mdEscape(name)
}

func targetText(f Figure) string {
	if f.Target == nil {
		return ""
	}
	return f.Target.Text
}

func baselineText(f Figure) string {
	if f.Baseline == nil {
		return ""
	}
	return fmt.Sprintf("%s: %s", mdEscape(f.Baseline.Name), fmtVal(f.Baseline.Value, f.Baseline.Unit))
}

// verdict says whether f was held to a target, and whether it met it: a
// figure that was not measured never does, whatever Met says.
func verdict(f Figure) (judged, met bool) {
	if f.Met == nil {
		return false, false
	}
	return true, *f.Met && f.Measured()
}

func fmtMet(f Figure) string {
	switch judged, met := verdict(f); {
	case !judged:
		return ""
	case met:
		return "yes"
	default:
		return "**no**"
	}
}

// fmtVal prints v with about three significant digits, and its unit, or
// "not measured".
func fmtVal(v float64, unit string) string {
	if !measured(v) {
		return "not measured"
	}
	var s string
	switch a := math.Abs(v); {
	case unit == "count" || unit == "instances" || unit == "nodes":
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100 || a == 0:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(v, 'f', 3, 64)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func failedScenarios(r *Results) []string {
	var out []string
	for _, sc := range r.Scenarios {
		if sc.Status != "ok" {
			out = append(out, sc.Name)
		}
	}
	return out
}

// mdEscape keeps a string from breaking a Markdown table row.
func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.ReplaceAll(s, "\n", " ")
}
