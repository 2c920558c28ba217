package cli

import (
	"context"
	"fmt"
)

func deleteCommand() *command {
	return &command{
		name: "delete", args: "<service-name>", summary: "Delete a microservice entry",
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 1, "<service-name>")
			if err != nil {
				return err
			}
			msg, err := c.DeleteService(ctx, args[0])
			if err != nil {
				return err
			}
			return show(s, map[string]string{"Message": msg}, func(map[string]string) error {
				_, err := fmt.Fprintln(s.env.Stdout, msg)
				return err
			})
		},
	}
}
