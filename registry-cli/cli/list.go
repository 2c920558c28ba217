package cli

import (
	"context"
	"sort"
	"strconv"
	"strings"
)

func listCommand() *command {
	return &command{
		name: "list", summary: "List all microservices and information stored by the registry-service",
		run: func(ctx context.Context, s *session, args []string) error {
			if err := wantArgs(args, 0, "no arguments"); err != nil {
				return err
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			svcs, err := c.ListServices(ctx)
			if err != nil {
				return err
			}
			if s.json {
				return s.printJSON(svcs)
			}
			names := make([]string, 0, len(svcs))
			for n := range svcs {
				names = append(names, n)
			}
			sort.Strings(names)
			t := newTable(s.env.Stdout, "NAME", "RUNTIMES", "CPU", "MEMORY", "SOFT RTT", "HARD RTT")
			for _, n := range names {
				info := svcs[n]
				t.row(n, strings.Join(info.Runtimes(), ","), strconv.Itoa(info.CpuReq)+"m",
					strconv.Itoa(info.MemoryReq)+"MiB", ms(info.NetworkSoftReq.RTT), ms(info.NetworkHardReq.RTT))
			}
			return t.flush()
		},
	}
}
