package main

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotSpec is one PNG drawn from figures measured at several network
// sizes: each line is a figure name, plotted against N.
type plotSpec struct {
	file, title, ylabel string
	lines               []string
	// logY draws the y axis on a log scale.
	logY bool
}

// plotSpecs lists, by scenario name, the plots drawn from its figures.
var plotSpecs = map[string][]plotSpec{}

// drawPlots draws the plots of sc into dir and returns their file names.
// Plots without any point are left out.
func drawPlots(dir string, sc *Scenario) ([]string, error) {
	var files []string
	for _, spec := range plotSpecs[sc.Name] {
		ok, err := drawPlot(filepath.Join(dir, spec.file), spec, sc.Figures)
		if err != nil {
			return files, fmt.Errorf("%s: %w", spec.file, err)
		}
		if ok {
			files = append(files, spec.file)
		}
	}
	return files, nil
}

func drawPlot(path string, spec plotSpec, figs []Figure) (bool, error) {
	p := plot.New()
	p.Title.Text = spec.title
	p.X.Label.Text = "allocators in the network (N)"
	p.Y.Label.Text = spec.ylabel
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	drawn := false
	var sizes []float64
	for i, name := range spec.lines {
		var pts plotter.XYs
		for _, f := range figs {
			if f.Name == name && f.N > 0 {
				if spec.logY && f.Value <= 0 {
					continue
				}
				pts = append(pts, plotter.XY{X: float64(f.N), Y: f.Value})
				if !slices.Contains(sizes, float64(f.N)) {
					sizes = append(sizes, float64(f.N))
				}
			}
		}
		if len(pts) == 0 {
			continue
		}
		slices.SortFunc(pts, func(a, b plotter.XY) int {
			switch {
			case a.X < b.X:
				return -1
			case a.X > b.X:
				return 1
			}
			return 0
		})
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return false, err
		}
		l.Color = plotutil.Color(i)
		s.Color = plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		p.Legend.Add(name, l, s)
		drawn = true
	}
	if !drawn {
		return false, nil
	}
	slices.Sort(sizes)
	var ticks []plot.Tick
	for _, n := range sizes {
		ticks = append(ticks, plot.Tick{Value: n, Label: fmt.Sprintf("%g", n)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min = 0
	if spec.logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
	} else {
		p.Y.Min = 0
	}
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return false, err
	}
	return true, nil
}

// logTicks labels 1, 2 and 5 times each power of ten on a log axis.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for e := math.Floor(math.Log10(max(lo, 1e-9))); math.Pow(10, e) <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v >= lo && v <= hi {
				out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return out
}
