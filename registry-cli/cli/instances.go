package cli

import (
	"context"
	"io"
	"strconv"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

func instancesCommand() *command {
	return &command{
		name: "instances", args: "[service-name]", summary: "List instances, of one service or all",
		run: func(ctx context.Context, s *session, args []string) error {
			if len(args) > 1 {
				return usagef("want at most one argument: [service-name]")
			}
			service := ""
			if len(args) == 1 {
				service = args[0]
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			insts, err := c.ListInstances(ctx, service)
			if err != nil {
				return err
			}
			if s.json {
				return s.printJSON(insts)
			}
			return writeInstances(s.env.Stdout, insts, time.Now())
		},
	}
}

// writeInstances prints instance records as a table; VERSION is the
// version of the service's definition each was started from ("-":
// unknown). now is what ages are counted from.
func writeInstances(w io.Writer, insts []registry.Instance, now time.Time) error {
	t := newTable(w, "ID", "SERVICE", "VERSION", "STATE", "RUNTIME", "NODE", "ON DEMAND", "RESTARTS", "STARTED")
	for _, in := range insts {
		version := "-"
		if in.Version > 0 {
			version = strconv.Itoa(in.Version)
		}
		started := "-"
		if !in.Started.IsZero() {
			started = now.Sub(in.Started).Round(time.Second).String() + " ago"
		}
		t.row(in.ID, in.Service, version, in.State, in.Runtime, short(in.Node), strconv.FormatBool(in.OnDemand),
			strconv.Itoa(in.Restarts), started)
	}
	return t.flush()
}

// short abbreviates a peer ID for tables.
func short(id string) string {
	if len(id) <= 16 {
		return id
	}
	return id[:8] + "…" + id[len(id)-6:]
}
