package cli

import (
	"context"
	"strings"
)

func membersCommand() *command {
	return &command{
		name: "members", summary: "List the registry cluster's members (voters, learners, clients)",
		run: func(ctx context.Context, s *session, args []string) error {
			if err := wantArgs(args, 0, "no arguments"); err != nil {
				return err
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			ms, err := c.Members(ctx)
			if err != nil {
				return err
			}
			if s.json {
				return s.printJSON(ms)
			}
			t := newTable(s.env.Stdout, "NAME", "ROLE", "LEADER", "STARTED", "CLIENT URLS")
			for _, m := range ms {
				leader := ""
				if m.Leader {
					leader = "*"
				}
				started := "yes"
				if !m.Started {
					started = "no"
				}
				t.row(m.Name, m.Role, leader, started, strings.Join(m.ClientURLs, ","))
			}
			return t.flush()
		},
	}
}
