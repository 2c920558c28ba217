package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

const autoscaleSynopsis = "<service-name> [-min N -max N -rps R ... | -off]"

const autoscaleHelp = `
With -max and at least one check (-rps, -inflight, -cpu, or
-prometheus-query with -prometheus-target), sets the service's autoscaling
policy: every -interval the registry's leader sets the desired count on
-compute to ceil(count × value / target) for the check that wants the
most, within -min and -max (10% tolerance; at most max(2×, +4) more per
step; down only once every count wanted within -window is lower, then to
the highest wanted in its second half; nothing moves for -cooldown after a
change). Targets are per instance: requests per
second, requests in flight, CPU percent of one core; a Prometheus query
(registry-service's -prometheus-url) must come to one number, the
service's total. -min 0 lets the service go to zero when idle; a request
through a proxy starts it again. Without checks: shows the policy and the
last decision. With -off: turns autoscaling off (the count stays).
Examples:
    registry-cli autoscale hello -min 1 -max 5 -rps 50
    registry-cli autoscale hello
    registry-cli autoscale hello -off
`

// autoscaleFlags are the autoscale command's options; set records which
// were given.
type autoscaleFlags struct {
	min, max                   int
	rps, inflight, cpu         float64
	promQuery                  string
	promTarget                 float64
	interval, window, cooldown time.Duration
	compute                    string
	off                        bool
	fs                         *flag.FlagSet
}

func (f *autoscaleFlags) register(fs *flag.FlagSet) {
	f.fs = fs
	fs.IntVar(&f.min, "min", 1, "the fewest instances to keep (0 lets the service go to zero when idle)")
	fs.IntVar(&f.max, "max", 0, "the most instances to run (mandatory with a check)")
	fs.Float64Var(&f.rps, "rps", 0, "check: requests per second per instance to aim at")
	fs.Float64Var(&f.inflight, "inflight", 0, "check: requests in flight per instance to aim at")
	fs.Float64Var(&f.cpu, "cpu", 0, "check: CPU percent (of one core) per instance to aim at")
	fs.StringVar(&f.promQuery, "prometheus-query", "", "check: a Prometheus query that comes to one number, the service's total (with -prometheus-target)")
	fs.Float64Var(&f.promTarget, "prometheus-target", 0, "the -prometheus-query value per instance to aim at")
	fs.DurationVar(&f.interval, "interval", 0, "how often the policy is evaluated (default "+shortDuration(registry.DefaultEvaluationInterval)+")")
	fs.DurationVar(&f.window, "window", 0, "scale-down stabilization window: the count goes down only once every count wanted within it is lower (default "+shortDuration(registry.DefaultStabilizationWindow)+")")
	fs.DurationVar(&f.cooldown, "cooldown", 0, "how long the count stays put after a change (default "+shortDuration(registry.DefaultCooldown)+")")
	fs.StringVar(&f.compute, "compute", "", "the compute whose desired count the policy sets (default \""+registry.ComputePhysarum+"\": the whole network)")
	fs.BoolVar(&f.off, "off", false, "turn autoscaling off; the desired count stays as it is")
}

// given lists the flags given among names, in order.
func (f *autoscaleFlags) given(names ...string) []string {
	set := map[string]bool{}
	if f.fs != nil {
		f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	}
	var out []string
	for _, n := range names {
		if set[n] {
			out = append(out, "-"+n)
		}
	}
	return out
}

// The autoscale command's modes.
const (
	autoscaleShow = iota
	autoscaleSet
	autoscaleOff
)

var (
	checkFlags  = []string{"rps", "inflight", "cpu", "prometheus-query", "prometheus-target"}
	policyFlags = []string{"min", "max", "interval", "window", "cooldown", "compute"}
)

// policy reads the flags: the mode they ask for and, to set, the policy.
// Every mistake is a usage error naming the flag.
func (f *autoscaleFlags) policy() (int, registry.AutoscalePolicy, error) {
	var p registry.AutoscalePolicy
	checks := f.given(checkFlags...)
	if f.off {
		if other := f.given(slices.Concat(checkFlags, policyFlags)...); len(other) > 0 {
			return 0, p, usagef("-off takes no other option (got %s): it turns autoscaling off", strings.Join(other, " "))
		}
		return autoscaleOff, p, nil
	}
	if len(checks) == 0 {
		if other := f.given(policyFlags...); len(other) > 0 {
			return 0, p, usagef("%s without a check: give at least one of -rps, -inflight, -cpu, or -prometheus-query with -prometheus-target", strings.Join(other, " "))
		}
		return autoscaleShow, p, nil
	}
	switch {
	case len(f.given("max")) == 0:
		return 0, p, usagef("-max missing: the most instances to run, e.g. -max 5")
	case f.max < 1:
		return 0, p, usagef("-max %d: want at least 1", f.max)
	case f.max > registry.MaxAutoscaleMax:
		return 0, p, usagef("-max %d: at most %d", f.max, registry.MaxAutoscaleMax)
	case f.min < 0:
		return 0, p, usagef("-min %d: want 0 or more (0 lets the service go to zero)", f.min)
	case f.min > f.max:
		return 0, p, usagef("-min %d is above -max %d", f.min, f.max)
	}
	p.Min, p.Max, p.Compute = f.min, f.max, f.compute
	for _, c := range []struct {
		flag, metric string
		target       float64
	}{
		{"rps", registry.MetricRPS, f.rps},
		{"inflight", registry.MetricInflight, f.inflight},
		{"cpu", registry.MetricCPU, f.cpu},
	} {
		if len(f.given(c.flag)) == 0 {
			continue
		}
		if err := checkTarget(c.flag, c.target); err != nil {
			return 0, p, err
		}
		p.Checks = append(p.Checks, registry.AutoscaleCheck{Metric: c.metric, Target: c.target})
	}
	switch q, t := len(f.given("prometheus-query")) > 0, len(f.given("prometheus-target")) > 0; {
	case q && !t:
		return 0, p, usagef("-prometheus-query needs -prometheus-target: the query's value per instance to aim at")
	case t && !q:
		return 0, p, usagef("-prometheus-target needs -prometheus-query: the query whose value it is")
	case q:
		if strings.TrimSpace(f.promQuery) == "" {
			return 0, p, usagef("-prometheus-query is empty")
		}
		if len(f.promQuery) > registry.MaxFieldLen {
			return 0, p, usagef("-prometheus-query: longer than %d characters", registry.MaxFieldLen)
		}
		if err := checkTarget("prometheus-target", f.promTarget); err != nil {
			return 0, p, err
		}
		p.Checks = append(p.Checks, registry.AutoscaleCheck{Metric: registry.MetricPrometheus, Target: f.promTarget, Query: f.promQuery})
	}
	for _, d := range []struct {
		flag string
		d    time.Duration
		to   *registry.Duration
	}{
		{"interval", f.interval, &p.EvaluationInterval},
		{"window", f.window, &p.StabilizationWindow},
		{"cooldown", f.cooldown, &p.Cooldown},
	} {
		switch {
		case d.d < 0:
			return 0, p, usagef("-%s %s: want a positive duration such as 30s", d.flag, d.d)
		case d.d > registry.MaxAutoscaleDuration:
			return 0, p, usagef("-%s %s: at most %s", d.flag, shortDuration(d.d), shortDuration(registry.MaxAutoscaleDuration))
		}
		*d.to = registry.Duration(d.d)
	}
	if p.Compute != "" {
		if err := registry.ValidateComputeName(p.Compute); err != nil {
			return 0, p, usagef("-compute: %v", err)
		}
	}
	// What the flags cannot say wrong, Validate would; the registry checks
	// again.
	if err := p.Validate(); err != nil {
		return 0, p, usageError{err.Error()}
	}
	return autoscaleSet, p, nil
}

// checkTarget refuses a target that is not a number above 0.
func checkTarget(flag string, v float64) error {
	if !(v > 0) || math.IsInf(v, 0) {
		return usagef("-%s %g: want a number above 0 (per instance)", flag, v)
	}
	return nil
}

func autoscaleCommand() *command {
	var f autoscaleFlags
	return &command{
		name: "autoscale", args: autoscaleSynopsis,
		summary: "Set, show or turn off a service's autoscaling policy (min, max, rps/inflight/cpu/prometheus targets)",
		help:    autoscaleHelp,
		flags:   func(fs *flag.FlagSet, _ *session) { f.register(fs) },
		run: func(ctx context.Context, s *session, args []string) error {
			if err := wantArgs(args, 1, "<service-name>"); err != nil {
				return err
			}
			service := args[0]
			mode, p, err := f.policy()
			if err != nil {
				return err
			}
			if err := registry.ValidateName(service); err != nil {
				return err
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			now := time.Now()
			switch mode {
			case autoscaleOff:
				msg, err := c.DeleteAutoscale(ctx, service)
				if err != nil {
					return err
				}
				msg = cmp.Or(msg, "autoscaling off for "+service)
				return show(s, map[string]string{"Message": msg}, func(map[string]string) error {
					_, err := fmt.Fprintln(s.env.Stdout, msg)
					return err
				})
			case autoscaleSet:
				st, err := c.SetAutoscale(ctx, service, p)
				if err != nil {
					return err
				}
				return show(s, st, func(st registry.AutoscaleState) error {
					return writeAutoscale(s.env.Stdout, st, now, false)
				})
			}
			st, err := c.GetAutoscale(ctx, service)
			if e, ok := errors.AsType[*wire.Error](err); ok && e.Code == wire.CodeNotFound {
				return fmt.Errorf("%w (set one with 'registry-cli autoscale %s -max 5 -rps 50')", err, service)
			}
			if err != nil {
				return err
			}
			return show(s, st, func(st registry.AutoscaleState) error {
				return writeAutoscale(s.env.Stdout, st, now, true)
			})
		},
	}
}

// writeAutoscale prints a policy in two lines, and with last a third,
// the last decision:
//
//	hello: autoscale min 1 max 5 on physarum: rps 50 per instance
//	  every 10s, scale-down window 5m, cooldown 30s; set by peer 12D3KooW…6JsBn1 3m0s ago
//	  last decision 17:02:03 (12s ago): rps 200.0 per instance > target 50 (tolerance 10%): 1 → 4
func writeAutoscale(w io.Writer, st registry.AutoscaleState, now time.Time, last bool) error {
	line := "  " + autoscaleTiming(st.Policy)
	if st.SetBy != "" {
		line += "; set by " + caller(st.SetBy)
		if !st.SetAt.IsZero() {
			line += " " + age(now, st.SetAt) + " ago"
		}
	}
	if _, err := fmt.Fprintf(w, "%s: autoscale %s\n%s\n", st.Service, autoscaleSummary(st.Policy), line); err != nil {
		return err
	}
	if !last {
		return nil
	}
	_, err := fmt.Fprintf(w, "  %s\n", lastDecision(st.Last, now))
	return err
}

// autoscaleLines are what status shows of a service's autoscaling:
//
//	autoscale: min 1 max 5 on physarum: rps 50 per instance; every 10s, scale-down window 5m, cooldown 30s
//	last decision 17:02:03 (12s ago): rps 200.0 per instance > target 50 (tolerance 10%): 1 → 4
func autoscaleLines(st registry.AutoscaleState, now time.Time) string {
	return "autoscale: " + autoscaleSummary(st.Policy) + "; " + autoscaleTiming(st.Policy) + "\n" + lastDecision(st.Last, now)
}

// autoscaleSummary is a policy's bounds and checks: "min 1 max 5 on
// physarum: rps 50 per instance, cpu 70% per instance".
func autoscaleSummary(p registry.AutoscalePolicy) string {
	checks := make([]string, len(p.Checks))
	for i, c := range p.Checks {
		target := strconv.FormatFloat(c.Target, 'g', -1, 64)
		switch c.Metric {
		case registry.MetricCPU:
			target += "%"
		case registry.MetricPrometheus:
			q := c.Query
			if len(q) > 60 {
				q = q[:60] + "..."
			}
			checks[i] = "prometheus " + strconv.Quote(oneLineText(q)) + " " + target + " per instance"
			continue
		}
		checks[i] = c.Metric + " " + target + " per instance"
	}
	return fmt.Sprintf("min %d max %d on %s: %s", p.Min, p.Max, cmp.Or(p.Compute, registry.ComputePhysarum), strings.Join(checks, ", "))
}

// autoscaleTiming is a policy's durations, defaults filled in: "every
// 10s, scale-down window 5m, cooldown 30s".
func autoscaleTiming(p registry.AutoscalePolicy) string {
	p = p.WithDefaults()
	return fmt.Sprintf("every %s, scale-down window %s, cooldown %s", shortDuration(time.Duration(p.EvaluationInterval)),
		shortDuration(time.Duration(p.StabilizationWindow)), shortDuration(time.Duration(p.Cooldown)))
}

// lastDecision says when the last decision was taken and why (its reason
// names the values and the change: "... : 1 → 4").
func lastDecision(d *registry.AutoscaleDecision, now time.Time) string {
	if d == nil {
		return "last decision: none yet"
	}
	at := d.At.Local()
	when := at.Format(time.TimeOnly)
	if y, m, dd := at.Date(); y != now.Local().Year() || m != now.Local().Month() || dd != now.Local().Day() {
		when = at.Format(time.DateTime)
	}
	return fmt.Sprintf("last decision %s (%s ago): %s", when, age(now, d.At), oneLineText(d.Reason))
}

// shortDuration writes a duration without its zero units: 5m, not 5m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
