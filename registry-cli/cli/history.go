package cli

import (
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

func historyCommand() *command {
	return &command{
		name: "history", args: "<service-name>", summary: "List the versions the registry keeps of a service's definition, newest first",
		help: `
Each registration of a definition that differs from the current one is a
new version; the registry keeps the last ` + strconv.Itoa(registry.ServiceVersionsKept) + `, the current one (the first
listed) included. 'get' shows the current definition, 'instances' the
version each instance was started from.
`,
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 1, "<service-name>")
			if err != nil {
				return err
			}
			vs, err := c.History(ctx, args[0])
			if err != nil {
				return err
			}
			return show(s, vs, func(vs []registry.ServiceVersion) error { return writeHistory(s.env.Stdout, vs) })
		},
	}
}

// maxWhat bounds the IMAGE/COMMAND column.
const maxWhat = 60

// writeHistory prints a service's versions as a table, newest first; the
// first is the current one.
func writeHistory(w io.Writer, vs []registry.ServiceVersion) error {
	t := newTable(w, "VERSION", "SET AT", "SET BY", "RUNTIME", "IMAGE/COMMAND", "CPU", "MEMORY")
	for i, v := range vs {
		version := strconv.Itoa(v.Version)
		if i == 0 {
			version += " (current)"
		}
		setAt := "-"
		if !v.SetAt.IsZero() {
			setAt = v.SetAt.Local().Format(time.DateTime)
		}
		runtimes := strings.Join(v.Info.Runtimes(), ",")
		t.row(version, setAt, orDash(caller(v.SetBy)), orDash(runtimes), orDash(what(v.Info)),
			strconv.Itoa(v.Info.CpuReq)+"m", strconv.Itoa(v.Info.MemoryReq)+"MiB")
	}
	return t.flush()
}

// what is what a definition runs: its image, and its process command
// with its arguments, shortened to maxWhat runes.
func what(info registry.ServiceInfo) string {
	var parts []string
	if info.DockerHash != "" {
		parts = append(parts, strings.TrimSpace(info.DockerHash+" "+info.Command))
	}
	if info.Exec != nil {
		parts = append(parts, strings.Join(append([]string{info.Exec.Command}, info.Exec.Args...), " "))
	}
	s := strings.Join(strings.Fields(strings.Join(parts, " | ")), " ")
	if r := []rune(s); len(r) > maxWhat {
		s = string(r[:maxWhat-1]) + "…"
	}
	return s
}
