package cli

import (
	"context"
	"fmt"
)

func deleteCommand() *command {
	return &command{
		name: "delete", args: "<service-name>", summary: "Delete a microservice entry",
		run: func(ctx context.Context, s *session, args []string) error {
			if err := wantArgs(args, 1, "<service-name>"); err != nil {
				return err
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			msg, err := c.DeleteService(ctx, args[0])
			if err != nil {
				return err
			}
			if s.json {
				return s.printJSON(map[string]string{"Message": msg})
			}
			fmt.Fprintln(s.env.Stdout, msg)
			return nil
		},
	}
}
