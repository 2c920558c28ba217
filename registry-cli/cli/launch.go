package cli

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// The instance lifecycle (seed 003): launch, launched, instance, act and
// forget, over the registry's registry.Lifecycle.

const launchHelp = `
Launches one instance of the service, kept apart from scale's counts: the
registry answers at once with its UUID and state pending, then places it
(on -compute, by Physarum's placement) and starts it. -uuid names it with
a UUID of yours (RFC 4122 text, 8-4-4-4-12 hexadecimal digits); one that
is in use is refused. -callback has every change of it POSTed, signed, to
an http:// or https:// URL; the callback's secret, to check signatures
with, is printed this once. Follow it with 'registry-cli instance <uuid>'.
Examples:
    registry-cli launch hello
    registry-cli launch hello -uuid 0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f -callback https://ci.example.com/hook
`

func launchCommand() *command {
	var r registry.LaunchRequest
	return &command{
		name: "launch", args: "<service-name> [-uuid <uuid>] [-compute <name>] [-callback <url>]",
		summary: "Launch one instance of a service under a UUID (yours or one assigned)",
		help:    launchHelp,
		flags: func(fs *flag.FlagSet, _ *session) {
			fs.StringVar(&r.UUID, "uuid", "", "the instance's UUID (default: one is assigned)")
			fs.StringVar(&r.Compute, "compute", "", "the compute to run it on (default \""+registry.ComputePhysarum+"\": the whole network)")
			fs.StringVar(&r.Callback, "callback", "", "an http:// or https:// URL to POST every change of the instance to")
		},
		run: func(ctx context.Context, s *session, args []string) error {
			if err := wantArgs(args, 1, "<service-name>"); err != nil {
				return err
			}
			r.Service = args[0]
			if err := registry.ValidateLaunch(&r); err != nil {
				return err
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			li, err := c.Launch(ctx, r)
			if err != nil {
				return err
			}
			return show(s, li, func(li registry.LaunchedInstance) error { return writeLaunch(s.env.Stdout, li) })
		},
	}
}

// writeLaunch prints launch's answer: the UUID and state, then the
// callback and its secret when one was created.
func writeLaunch(w io.Writer, li registry.LaunchedInstance) error {
	if _, err := fmt.Fprintln(w, launchedLine(li)); err != nil {
		return err
	}
	if li.Callback == "" {
		return nil
	}
	_, err := fmt.Fprintf(w, "callback %s, secret %s (shown this once: keep it to check signatures)\n", li.Callback, cmp.Or(li.CallbackSecret, "-"))
	return err
}

// launchedLine sums a launched instance up: "<uuid>: running (service
// hello, compute physarum, node n1)".
func launchedLine(li registry.LaunchedInstance) string {
	where := "service " + li.Service + ", compute " + cmp.Or(li.Compute, registry.ComputePhysarum)
	if node := cmp.Or(li.Node, li.NodeID); node != "" {
		where += ", node " + nodeLabel(node)
	}
	line := fmt.Sprintf("%s: %s (%s)", li.UUID, li.State, where)
	if li.Message != "" {
		line += ": " + oneLineText(li.Message)
	}
	return line
}

const launchedHelp = `
Lists the instances launched by UUID ('registry-cli launch'), of one
service or all, oldest first: STATE is what the instance is (pending,
starting, running, stopping, stopped, failed, lost), WANT what was asked
(running, or stopped by 'registry-cli act <uuid> stop'), AGE how long it
has run, MESSAGE why it failed, was lost or cannot start.
`

func launchedCommand() *command {
	return &command{
		name: "launched", args: "[service-name]",
		summary: "List the instances launched by UUID, of one service or all",
		help:    launchedHelp,
		run: func(ctx context.Context, s *session, args []string) error {
			if len(args) > 1 {
				return usagef("want at most one argument: [service-name]")
			}
			service := ""
			if len(args) == 1 {
				service = args[0]
				if err := registry.ValidateName(service); err != nil {
					return err
				}
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			ls, err := c.ListLaunched(ctx, service)
			if err != nil {
				return err
			}
			return show(s, ls, func(ls []registry.LaunchedInstance) error { return writeLaunched(s.env.Stdout, ls, time.Now()) })
		},
	}
}

// writeLaunched prints launched instances as a table, in the order given;
// now is what ages are counted from.
func writeLaunched(w io.Writer, ls []registry.LaunchedInstance, now time.Time) error {
	if len(ls) == 0 {
		_, err := fmt.Fprintln(w, "no launched instances")
		return err
	}
	t := newTable(w, "UUID", "SERVICE", "NODE", "STATE", "WANT", "AGE", "RESTARTS", "MESSAGE")
	for _, li := range ls {
		t.row(li.UUID, li.Service, orDash(nodeLabel(cmp.Or(li.Node, li.NodeID))), li.State, orDash(li.Want),
			age(now, li.Started), strconv.Itoa(li.Restarts), orDash(oneLineText(li.Message)))
	}
	return t.flush()
}

const instanceHelp = `
Shows an instance launched by UUID: its state and what was asked, its
node (name and peer ID), where it answers (its proxy's peer ID and
addresses), when it started, its restarts, and why it failed, was lost or
cannot start.
`

func instanceCommand() *command {
	return &command{
		name: "instance", args: "<uuid>",
		summary: "Show an instance launched by UUID: state, node, addresses",
		help:    instanceHelp,
		run: func(ctx context.Context, s *session, args []string) error {
			c, id, err := s.openUUID(ctx, args)
			if err != nil {
				return err
			}
			li, err := c.GetLaunched(ctx, id)
			if err != nil {
				return err
			}
			return show(s, li, func(li registry.LaunchedInstance) error { return writeInstance(s.env.Stdout, li, time.Now()) })
		},
	}
}

// writeInstance prints one launched instance, a field a line.
func writeInstance(w io.Writer, li registry.LaunchedInstance, now time.Time) error {
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format(time.RFC3339) + " (" + age(now, t) + " ago)"
	}
	node := "-"
	switch {
	case li.Node != "" && li.NodeID != "" && li.Node != li.NodeID:
		node = li.Node + " (" + li.NodeID + ")"
	case li.Node != "" || li.NodeID != "":
		node = cmp.Or(li.Node, li.NodeID)
	}
	version := "-"
	if li.Version != 0 {
		version = strconv.Itoa(li.Version)
	}
	created := when(li.Created)
	if li.SetBy != "" {
		created += " by " + li.SetBy
	}
	fields := [][2]string{
		{"uuid", li.UUID},
		{"service", li.Service},
		{"compute", cmp.Or(li.Compute, registry.ComputePhysarum)},
		{"state", li.State},
		{"want", orDash(li.Want)},
		{"node", node},
		{"proxy", orDash(li.Addrs.PeerID)},
		{"addrs", orDash(strings.Join(li.Addrs.Multiaddrs, " "))},
		{"version", version},
		{"started", when(li.Started)},
		{"restarts", strconv.Itoa(li.Restarts)},
		{"message", orDash(oneLineText(li.Message))},
		{"callback", orDash(li.Callback)},
		{"created", created},
	}
	t := newTable(w, fields[0][0]+":", fields[0][1])
	for _, f := range fields[1:] {
		t.row(f[0]+":", f[1])
	}
	return t.flush()
}

const actSynopsis = "<uuid> start|stop|reboot"

const actHelp = `
Acts on an instance launched by UUID, on the registry-service asked, and
prints the instance as the action left it:
    start   starts a stopped instance again, on its node (or says why not)
    stop    stops it, releasing its resources; its record stays (state
            stopped) until 'registry-cli forget'
    reboot  stops it and starts it again on its node (RESTARTS counts it)
`

func actCommand() *command {
	return &command{
		name: "act", args: actSynopsis,
		summary: "Start, stop or reboot an instance launched by UUID",
		help:    actHelp,
		run: func(ctx context.Context, s *session, args []string) error {
			if err := wantArgs(args, 2, actSynopsis); err != nil {
				return err
			}
			action := args[1]
			if !slices.Contains(registry.Actions, action) {
				return usagef("unknown action %q: want %s", action, strings.Join(registry.Actions, ", "))
			}
			id, err := registry.NormalizeUUID(args[0])
			if err != nil {
				return err
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			li, err := c.Act(ctx, id, action)
			if err != nil {
				return err
			}
			return show(s, li, func(li registry.LaunchedInstance) error {
				_, err := fmt.Fprintln(s.env.Stdout, launchedLine(li))
				return err
			})
		},
	}
}

func forgetCommand() *command {
	return &command{
		name: "forget", args: "<uuid>",
		summary: "Stop an instance launched by UUID and delete its record (and its launch's callback)",
		run: func(ctx context.Context, s *session, args []string) error {
			c, id, err := s.openUUID(ctx, args)
			if err != nil {
				return err
			}
			msg, err := c.Forget(ctx, id)
			if err != nil {
				return err
			}
			msg = cmp.Or(msg, "forgot instance "+id)
			return show(s, map[string]string{"Message": msg}, func(map[string]string) error {
				_, err := fmt.Fprintln(s.env.Stdout, msg)
				return err
			})
		},
	}
}

// openUUID checks that the command's one argument is a UUID (before
// connecting: bad input fails at once), then connects.
func (s *session) openUUID(ctx context.Context, args []string) (*registry.Client, string, error) {
	if err := wantArgs(args, 1, "<uuid>"); err != nil {
		return nil, "", err
	}
	id, err := registry.NormalizeUUID(args[0])
	if err != nil {
		return nil, "", err
	}
	c, err := s.connect(ctx)
	return c, id, err
}
