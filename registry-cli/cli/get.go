package cli

import (
	"context"
)

func getCommand() *command {
	return &command{
		name: "get", args: "<service-name>", summary: "Get information about a microservice",
		help: `
Prints the service's current definition as JSON (with or without -json),
its Version included: 'history' lists the versions kept before it.
`,
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 1, "<service-name>")
			if err != nil {
				return err
			}
			info, err := c.GetService(ctx, args[0])
			if err != nil {
				return err
			}
			return s.printJSON(info)
		},
	}
}
