package cli

import (
	"context"
	"strconv"
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
			t := newTable(s.env.Stdout, "ID", "SERVICE", "STATE", "RUNTIME", "NODE", "ON DEMAND", "RESTARTS", "STARTED")
			for _, in := range insts {
				t.row(in.ID, in.Service, in.State, in.Runtime, short(in.Node), strconv.FormatBool(in.OnDemand),
					strconv.Itoa(in.Restarts), ago(in.Started))
			}
			return t.flush()
		},
	}
}

// short abbreviates a peer ID for tables.
func short(id string) string {
	if len(id) <= 16 {
		return id
	}
	return id[:8] + "…" + id[len(id)-6:]
}
