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
			t := newTable(s.env.Stdout, "NAME", "ROLE", "LEADER", "HEALTHY", "CLIENT URLS")
			for _, m := range ms {
				leader := ""
				if m.Leader {
					leader = "*"
				}
				health := "yes"
				switch {
				case !m.Started:
					health = "not started"
				case !m.Healthy:
					health = "NO"
				}
				t.row(m.Name, m.Role, leader, health, strings.Join(m.ClientURLs, ","))
			}
			return t.flush()
		},
	}
}
