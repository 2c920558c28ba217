package cli

import (
	"context"
	"strings"

	"github.com/physarum-p2p/physarum/registry"
)

func membersCommand() *command {
	return &command{
		name: "members", summary: "List the registry cluster's members (voters, learners, clients)",
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 0, "no arguments")
			if err != nil {
				return err
			}
			ms, err := c.Members(ctx)
			if err != nil {
				return err
			}
			return show(s, ms, func(ms []registry.Member) error {
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
			})
		},
	}
}
