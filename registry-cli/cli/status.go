package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/registry"
)

const statusHelp = `
With a service: a summary line, its autoscaling policy and last decision
when it has one, then one row per compute the service has a desired
count or pinned instances on (who set the count and when, and NOTE: what
stands in the way, a back-off after starts that keep failing, the last
failure), then its instances, pinned and on-demand:
    hello: 4/4 running (desired 4), 0 starting, 0 failed, 1 on demand
Without one: that summary line for every service.
With -json, the registry's status records (running_resources, desired,
starting, failed, on_demand, computes, instances, autoscale).
`

func statusCommand() *command {
	return &command{
		name: "status", args: "[service-name]",
		summary: "Show desired and running instances, per compute, of one service or all",
		help:    statusHelp,
		run: func(ctx context.Context, s *session, args []string) error {
			if len(args) > 1 {
				return usagef("want at most one argument: [service-name]")
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				all, err := c.StatusAll(ctx)
				if err != nil {
					return err
				}
				if all == nil {
					all = []registry.ServiceStatus{} // -json: [], not null
				}
				return show(s, all, func(all []registry.ServiceStatus) error {
					return writeStatusAll(s.env.Stdout, all, time.Now())
				})
			}
			st, err := c.Status(ctx, args[0])
			if err != nil {
				return err
			}
			return show(s, st, func(st registry.ServiceStatus) error {
				return writeStatus(s.env.Stdout, st, time.Now())
			})
		},
	}
}

// statusLine sums a service up on one line.
func statusLine(st registry.ServiceStatus) string {
	return fmt.Sprintf("%s: %d/%d running (desired %d), %d starting, %d failed, %d on demand",
		st.Service, st.RunningResources, st.Desired, st.Desired, st.Starting, st.Failed, st.OnDemand)
}

// writeStatus prints one service's status: its summary line (and its
// autoscaling, when it has a policy), a table of its computes, and a
// table of its instances. now is what ages and back-offs are counted
// from.
func writeStatus(w io.Writer, st registry.ServiceStatus, now time.Time) error {
	head := statusLine(st)
	if st.Autoscale != nil {
		head += "\n" + autoscaleLines(*st.Autoscale, now)
	}
	if _, err := fmt.Fprintf(w, "%s\n\n", head); err != nil {
		return err
	}
	if len(st.Computes) > 0 {
		t := newTable(w, "COMPUTE", "DESIRED", "RUNNING", "STARTING", "FAILED", "SET BY", "CHANGED", "NOTE")
		for _, name := range slices.Sorted(maps.Keys(st.Computes)) {
			cs := st.Computes[name]
			changed := "-"
			if !cs.SetAt.IsZero() {
				changed = age(now, cs.SetAt) + " ago"
			}
			t.row(name, strconv.Itoa(cs.Desired), strconv.Itoa(cs.Running), strconv.Itoa(cs.Starting),
				strconv.Itoa(cs.Failed), orDash(caller(cs.SetBy)), changed, orDash(computeNote(cs, now)))
		}
		if err := t.flush(); err != nil {
			return err
		}
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
	}
	if len(st.Instances) == 0 {
		_, err := fmt.Fprintln(w, "no instances")
		return err
	}
	insts := slices.Clone(st.Instances)
	registry.SortInstances(insts)
	t := newTable(w, "ID", "NODE", "COMPUTE", "STATE", "ON DEMAND", "AGE", "RESTARTS", "MESSAGE")
	for _, in := range insts {
		t.row(in.ID, orDash(nodeLabel(cmp.Or(in.NodeName, in.Node))), orDash(in.Compute), in.State, strconv.FormatBool(in.OnDemand),
			age(now, in.Started), strconv.Itoa(in.Restarts), orDash(oneLineText(in.Message)))
	}
	return t.flush()
}

// writeStatusAll prints every service's summary line, by name, each
// followed by what stands in the way on its computes, if anything.
func writeStatusAll(w io.Writer, all []registry.ServiceStatus, now time.Time) error {
	if len(all) == 0 {
		_, err := fmt.Fprintln(w, "no services")
		return err
	}
	all = slices.Clone(all)
	slices.SortFunc(all, func(a, b registry.ServiceStatus) int { return strings.Compare(a.Service, b.Service) })
	for _, st := range all {
		line := statusLine(st)
		for _, name := range slices.Sorted(maps.Keys(st.Computes)) {
			if note := computeNote(st.Computes[name], now); note != "" {
				line += "; " + name + ": " + note
			}
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// computeNote says what stands in the way of a service on a compute:
// the reconciler's message, a back-off still running, the last failure.
func computeNote(cs registry.ComputeStatus, now time.Time) string {
	var parts []string
	if cs.Message != "" {
		parts = append(parts, oneLineText(cs.Message))
	}
	// The reconciler's message may say it backs off already.
	if cs.BackoffUntil.After(now) && !strings.Contains(cs.Message, "backing off") {
		parts = append(parts, fmt.Sprintf("backing off until %s (in %s)",
			cs.BackoffUntil.Local().Format(time.TimeOnly), cs.BackoffUntil.Sub(now).Round(time.Second)))
	}
	if cs.LastFailure != "" {
		parts = append(parts, "last failure: "+oneLineText(cs.LastFailure))
	}
	return strings.Join(parts, "; ")
}

// caller shortens the peer IDs in who set a count ("peer 12D3KooW…jsB6ck").
func caller(who string) string {
	f := strings.Fields(who)
	for i, w := range f {
		f[i] = nodeLabel(w)
	}
	return strings.Join(f, " ")
}

// nodeLabel shows a node's name as it is, and a peer ID (what the
// registry gives for an allocator without a -name) abbreviated.
func nodeLabel(s string) string {
	if _, err := peer.Decode(s); err == nil {
		return short(s)
	}
	return s
}

// age is how long ago t was, to the second ("-" for none).
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return max(now.Sub(t), 0).Round(time.Second).String()
}

// oneLineText keeps free text (a message, an error) to one table cell.
func oneLineText(s string) string { return strings.Join(strings.Fields(s), " ") }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
