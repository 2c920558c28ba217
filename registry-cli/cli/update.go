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
instances over to it by -strategy:

  rolling (default): a new instance starts before an old one stops, at
    most -max-parallel at once; an old one stops for each new one that has
    run -min-healthy. Old and new serve side by side meanwhile.
  blue-green: the whole new set starts beside the old one, which alone
    serves; once every new instance has run -min-healthy, every proxy
    switches to the new set at once. The old set stays, idle, for
    -rollback-window: 'registry-cli rollback <service>' switches back
    while it runs, 'registry-cli promote <service>' stops it early.

A new instance that fails, or does not run within -healthy-deadline, or no
progress within -progress-deadline, fails the rollout and, unless
-auto-revert=false, rolls back to the definition it started from
(registered again as the next version); a blue-green rollout that fails
before its switch always goes back. Follow it with
'registry-cli rollouts <service>'; an update while one runs is refused.
    registry-cli update [OPTIONS] <config> <service-name>
    registry-cli update [OPTIONS] <config> <image-name> <service-name>
`

// strategyFlags are update's strategy options.
type strategyFlags struct {
	strategy                                  string
	maxParallel                               int
	minHealthy, healthyDeadline, progressLine time.Duration
	rollbackWindow                            time.Duration
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
			fs.StringVar(&f.strategy, "strategy", registry.StrategyRolling, "how to roll out: rolling or blue-green")
			fs.IntVar(&f.maxParallel, "max-parallel", registry.DefaultMaxParallel, "new instances starting at once, and beyond the desired count")
			fs.DurationVar(&f.minHealthy, "min-healthy", registry.DefaultMinHealthyTime, "how long a new instance runs before an old one stops for it")
			fs.DurationVar(&f.healthyDeadline, "healthy-deadline", registry.DefaultHealthyDeadline, "a new instance not running within this fails the rollout")
			fs.DurationVar(&f.progressLine, "progress-deadline", registry.DefaultProgressDeadline, "no progress for this long fails the rollout")
			fs.BoolVar(&f.autoRevert, "auto-revert", true, "on failure, roll back to the definition the rollout started from")
			fs.DurationVar(&f.rollbackWindow, "rollback-window", 0, "blue-green: how long the old set stays after the switch (default 10m)")
		},
		run: func(ctx context.Context, s *session, args []string) error {
			st := registry.Strategy{
				Type: f.strategy, MaxParallel: f.maxParallel, MinHealthyTime: registry.Duration(f.minHealthy),
				HealthyDeadline: registry.Duration(f.healthyDeadline), ProgressDeadline: registry.Duration(f.progressLine),
				AutoRevert: &f.autoRevert, RollbackWindow: registry.Duration(f.rollbackWindow),
			}
			if f.maxParallel < 1 || f.minHealthy <= 0 || f.healthyDeadline <= 0 || f.progressLine <= 0 || f.rollbackWindow < 0 {
				return usagef("-max-parallel, -min-healthy, -healthy-deadline, -progress-deadline and -rollback-window must be positive")
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
	if ro.BlueGreen() {
		fmt.Fprintf(s.env.Stdout, "rolling %s out from version %d to %d (blue-green: the switch comes once the new set is healthy; rollback window %s); follow it with: registry-cli rollouts %s\n",
			name, ro.From, ro.To, ro.Strategy.RollbackWindow, name)
		return nil
	}
	fmt.Fprintf(s.env.Stdout, "rolling %s out from version %d to %d (%s, at most %d at once); follow it with: registry-cli rollouts %s\n",
		name, ro.From, ro.To, ro.Strategy.Type, ro.Strategy.MaxParallel, name)
	return nil
}

func promoteCommand() *command {
	return rolloutActionCommand("promote", "End a blue-green rollout's rollback window now: the old set stops",
		func(c *registry.Client) func(context.Context, string) (registry.Rollout, error) { return c.Promote })
}

func rollbackCommand() *command {
	return rolloutActionCommand("rollback", "Go back to the definition the running rollout started from (blue-green: every proxy switches back at once)",
		func(c *registry.Client) func(context.Context, string) (registry.Rollout, error) { return c.Rollback })
}

// rolloutActionCommand is promote or rollback: one call on the service's
// running rollout, and the rollout as it now stands.
func rolloutActionCommand(name, summary string, op func(*registry.Client) func(context.Context, string) (registry.Rollout, error)) *command {
	return &command{
		name: name, args: "<service-name>", summary: summary,
		run: func(ctx context.Context, s *session, args []string) error {
			if len(args) != 1 {
				return usagef("want one <service-name>")
			}
			if err := registry.ValidateName(args[0]); err != nil {
				return usageError{err.Error()}
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			ro, err := op(c)(ctx, args[0])
			if err != nil {
				return err
			}
			return show(s, []registry.Rollout{ro}, func(ros []registry.Rollout) error { return writeRollouts(s.env.Stdout, ros) })
		},
	}
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
		state := ro.State
		if ro.BlueGreen() && ro.State == registry.RolloutRunning {
			state += ", " + map[bool]string{false: "old set serves", true: "switched"}[!ro.Switched.IsZero()]
		}
		t.row(ro.Service, versions, ro.Strategy.Type, state, ro.Started.Local().Format(time.DateTime), ro.Message)
	}
	return t.flush()
}
