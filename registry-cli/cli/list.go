package cli

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/physarum-p2p/physarum/registry"
)

func listCommand() *command {
	return &command{
		name: "list", summary: "List all microservices and information stored by the registry-service",
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 0, "no arguments")
			if err != nil {
				return err
			}
			svcs, err := c.ListServices(ctx)
			if err != nil {
				return err
			}
			return show(s, svcs, func(svcs map[string]registry.ServiceInfo) error {
				t := newTable(s.env.Stdout, "NAME", "RUNTIMES", "CPU", "MEMORY", "SOFT RTT", "HARD RTT")
				for _, n := range slices.Sorted(maps.Keys(svcs)) {
					info := svcs[n]
					t.row(n, strings.Join(info.Runtimes(), ","), strconv.Itoa(info.CpuReq)+"m",
						strconv.Itoa(info.MemoryReq)+"MiB", ms(info.NetworkSoftReq.RTT), ms(info.NetworkHardReq.RTT))
				}
				return t.flush()
			})
		},
	}
}
