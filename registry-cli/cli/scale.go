package cli

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/physarum-p2p/physarum/registry"
)

const scaleHelp = `
Keeps <number> pinned instances of the service running on the compute: the
registry's reconciler starts the missing ones within the compute's nodes,
replaces those that crash or are lost with their node, and stops the
surplus, newest first. 0 stops every pinned instance. Instances started
on demand, for requests, are counted apart and never stopped by scale.
The count is per compute: scaling on one leaves the others' counts alone.
Follow it with 'registry-cli status <service-name>'; 'registry-cli
computes' lists the computes. Example:
    registry-cli scale hello 3 -compute site-a
`

func scaleCommand() *command {
	var compute string
	return &command{
		name: "scale", args: "<service-name> <number> [-compute <name>]",
		summary: "Keep <number> instances of a service running, on -compute (default: the whole network)",
		help:    scaleHelp,
		flags: func(fs *flag.FlagSet, _ *session) {
			fs.StringVar(&compute, "compute", "", "the compute to keep them on (default \""+registry.ComputePhysarum+"\": the whole network, Physarum's own placement)")
		},
		run: func(ctx context.Context, s *session, args []string) error {
			if err := wantArgs(args, 2, "<service-name> <number>"); err != nil {
				return err
			}
			service := args[0]
			number, err := parseCount(args[1])
			if err != nil {
				return err
			}
			if err := registry.ValidateName(service); err != nil {
				return err
			}
			if compute != "" {
				if err := registry.ValidateComputeName(compute); err != nil {
					return err
				}
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			// The count before, for the answer's "(was N)": one more round
			// trip, read apart from the write (another client may scale in
			// between), so it is only shown, never relied on. When it cannot
			// be read, the scale that follows says why, or succeeds without it.
			was := -1
			if st, err := c.Status(ctx, service); err == nil {
				was = st.Computes[cmp.Or(compute, registry.ComputePhysarum)].Desired
			}
			d, err := c.Scale(ctx, service, compute, number)
			if err != nil {
				return err
			}
			return show(s, d, func(d registry.Desired) error {
				_, err := fmt.Fprintln(s.env.Stdout, scaleLine(d, service, compute, was))
				return err
			})
		},
	}
}

// parseCount reads scale's <number>: a non-negative decimal integer.
func parseCount(s string) (int, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, usagef("<number> must be a non-negative integer, not %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, usagef("<number> %s is too large", s)
	}
	return n, nil
}

// scaleLine is scale's answer: "hello: desired 4 on site-a (was 2)"; was
// is -1 when the count before is not known. service and compute are what
// was asked, for an answer that leaves them out.
func scaleLine(d registry.Desired, service, compute string, was int) string {
	line := fmt.Sprintf("%s: desired %d on %s", cmp.Or(d.Service, service), d.Number,
		cmp.Or(d.Compute, compute, registry.ComputePhysarum))
	if was >= 0 {
		line += fmt.Sprintf(" (was %d)", was)
	}
	return line
}
