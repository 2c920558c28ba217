package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

const updateHelp = `
Registers the config as the service's next version, as add does (building
and handing over the image of a DockerConf service), then rolls its pinned
instances over to it. rolling (the only strategy built so far): a new
instance starts before an old one stops, at most -max-parallel at once;
an old one stops for each new one that has run -min-healthy. A new
instance that fails, or does not run within -healthy-deadline, or no
progress within -progress-deadline, fails the rollout and, unless
-auto-revert=false, rolls back to the definition it started from
(registered again as the next version). Follow it with
'registry-cli rollouts <service>'; an update while one runs is refused.
    registry-cli update [OPTIONS] <config> <service-name>
    registry-cli update [OPTIONS] <config> <image-name> <service-name>
`

// strategyFlags are update's strategy options.
type strategyFlags struct {
	strategy                                  string
	maxParallel                               int
	minHealthy, healthyDeadline, progressLine time.Duration
	autoRevert                                bool
}

func updateCommand() *command {
	var f strategyFlags
	return &command{
		name: "update", args: "<config> [<image-name>] <service-name>",
		summary: "Register a new version of a service and roll its instances over to it",
		help:    updateHelp + "\nThe config is add's (see registry-cli add -help).\n",
		flags: func(fs *flag.FlagSet, s *session) {
			addFlags(fs, s)
			fs.StringVar(&f.strategy, "strategy", registry.StrategyRolling, "how to roll out: rolling (blue-green is not built yet)")
			fs.IntVar(&f.maxParallel, "max-parallel", registry.DefaultMaxParallel, "new instances starting at once, and beyond the desired count")
			fs.DurationVar(&f.minHealthy, "min-healthy", registry.DefaultMinHealthyTime, "how long a new instance runs before an old one stops for it")
			fs.DurationVar(&f.healthyDeadline, "healthy-deadline", registry.DefaultHealthyDeadline, "a new instance not running within this fails the rollout")
			fs.DurationVar(&f.progressLine, "progress-deadline", registry.DefaultProgressDeadline, "no progress for this long fails the rollout")
			fs.BoolVar(&f.autoRevert, "auto-revert", true, "on failure, roll back to the definition the rollout started from")
		},
		run: func(ctx context.Context, s *session, args []string) error {
			st := registry.Strategy{
				Type: f.strategy, MaxParallel: f.maxParallel, MinHealthyTime: registry.Duration(f.minHealthy),
				HealthyDeadline: registry.Duration(f.healthyDeadline), ProgressDeadline: registry.Duration(f.progressLine),
				AutoRevert: &f.autoRevert,
			}
			if f.maxParallel < 1 || f.minHealthy <= 0 || f.healthyDeadline <= 0 || f.progressLine <= 0 {
				return usagef("-max-parallel, -min-healthy, -healthy-deadline and -progress-deadline must be positive")
			}
			if err := st.Validate(); err != nil {
				return usageError{err.Error()}
			}
			s.add.update = &st
			return runAdd(ctx, s, args)
		},
	}
}

// rollOut asks the registry to roll name out to info, and says so.
func (s *session) rollOut(ctx context.Context, c *registry.Client, name string, info registry.ServiceInfo, out map[string]any) error {
	ro, err := c.Update(ctx, name, info, *s.add.update)
	if err != nil {
		return err
	}
	if s.json {
		out["Rollout"] = ro
		return s.printJSON(out)
	}
	fmt.Fprintf(s.env.Stdout, "rolling %s out from version %d to %d (%s, at most %d at once); follow it with: registry-cli rollouts %s\n",
		name, ro.From, ro.To, ro.Strategy.Type, ro.Strategy.MaxParallel, name)
	return nil
}

func rolloutsCommand() *command {
	return &command{
		name: "rollouts", args: "[<service-name>]", summary: "Show the last rollout of each service (or of one): state, versions, progress",
		run: func(ctx context.Context, s *session, args []string) error {
			if len(args) > 1 {
				return usagef("want at most one <service-name>")
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
				if err := registry.ValidateName(name); err != nil {
					return usageError{err.Error()}
				}
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			ros, err := c.Rollouts(ctx, name)
			if err != nil {
				return err
			}
			return show(s, ros, func(ros []registry.Rollout) error { return writeRollouts(s.env.Stdout, ros) })
		},
	}
}

// writeRollouts prints rollouts as a table.
func writeRollouts(w io.Writer, ros []registry.Rollout) error {
	t := newTable(w, "SERVICE", "VERSIONS", "STRATEGY", "STATE", "STARTED", "MESSAGE")
	for _, ro := range ros {
		versions := fmt.Sprintf("%d → %d", ro.From, ro.To)
		if ro.RevertOf != 0 {
			versions += fmt.Sprintf(" (reverts %d)", ro.RevertOf)
		}
		t.row(ro.Service, versions, ro.Strategy.Type, ro.State, ro.Started.Local().Format(time.DateTime), ro.Message)
	}
	return t.flush()
}
