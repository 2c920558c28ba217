package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/physarum-p2p/physarum/registry"
)

const computeHelp = `
A compute is a place where instances may run: 'registry-cli scale -compute
<name>' keeps a service's instances on one. Its connector says which:
    physarum                the whole network, Physarum's own placement
    physarum:labels?site=a  the allocators whose -labels all match
                            (physarum:labels?site=a&rack=3)
    physarum:node?name=n1   one allocator, by its -name
    http://host:7051        an external Genisys connector, driven with seed
                            001's /service/<name>/scale and /status
Adding a name that exists redefines it. "physarum" and every allocator's
own compute (its -name) are built in: they cannot be redefined or
deleted. A compute that a service has a desired count on cannot be
deleted: scale the service to 0 there first. Examples:
    registry-cli compute add site-a 'physarum:labels?site=a'
    registry-cli compute delete site-a
`

func computesCommand() *command {
	return &command{
		name: "computes", summary: "List computes: where instances may run (scale -compute), with their nodes",
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 0, "no arguments")
			if err != nil {
				return err
			}
			cs, err := c.ListComputes(ctx)
			if err != nil {
				return err
			}
			if cs == nil {
				cs = []registry.ComputeInfo{} // -json: [], not null
			}
			return show(s, cs, func(cs []registry.ComputeInfo) error { return writeComputes(s.env.Stdout, cs) })
		},
	}
}

// writeComputes prints computes as a table, by name.
func writeComputes(w io.Writer, cs []registry.ComputeInfo) error {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b registry.ComputeInfo) int { return cmp.Compare(a.Name, b.Name) })
	t := newTable(w, "NAME", "KIND", "CONNECTOR", "NODES", "BUILTIN")
	for _, c := range cs {
		builtin := "no"
		if c.Builtin {
			builtin = "yes"
		}
		t.row(c.Name, c.Kind, c.Connector, nodeNames(c.Nodes), builtin)
	}
	return t.flush()
}

// maxNodeNames is how many node names a computes row shows.
const maxNodeNames = 5

// nodeNames lists a compute's nodes for a table cell: the first few
// names, sorted, then how many more.
func nodeNames(nodes []string) string {
	if len(nodes) == 0 {
		return "-"
	}
	nodes = slices.Clone(nodes)
	for i, n := range nodes {
		nodes[i] = nodeLabel(n)
	}
	slices.Sort(nodes)
	if len(nodes) <= maxNodeNames {
		return strings.Join(nodes, ",")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(nodes[:maxNodeNames], ","), len(nodes)-maxNodeNames)
}

const computeSynopsis = "add <name> <connector> | delete <name>"

func computeCommand() *command {
	return &command{
		name: "compute", args: computeSynopsis,
		summary: "Define (add) or remove (delete) an operator's compute",
		help:    computeHelp,
		run: func(ctx context.Context, s *session, args []string) error {
			if len(args) == 0 {
				return usagef("want a compute command: %s", computeSynopsis)
			}
			var do func(*registry.Client) (string, error)
			var done string // the answer when the registry gives no message
			switch sub, rest := args[0], args[1:]; sub {
			case "add":
				if len(rest) != 2 {
					return usagef("compute add wants <name> <connector> (got %d argument(s))", len(rest))
				}
				cp := registry.Compute{Name: rest[0], Connector: rest[1]}
				if err := cp.Validate(); err != nil {
					return err
				}
				do = func(c *registry.Client) (string, error) { return c.PutCompute(ctx, cp) }
				done = "added compute " + cp.Name
			case "delete":
				if len(rest) != 1 {
					return usagef("compute delete wants <name> (got %d argument(s))", len(rest))
				}
				if err := registry.ValidateComputeName(rest[0]); err != nil {
					return err
				}
				do = func(c *registry.Client) (string, error) { return c.DeleteCompute(ctx, rest[0]) }
				done = "deleted compute " + rest[0]
			default:
				return usagef("unknown compute command %q: want %s", sub, computeSynopsis)
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			msg, err := do(c)
			if err != nil {
				return err
			}
			msg = cmp.Or(msg, done)
			return show(s, map[string]string{"Message": msg}, func(map[string]string) error {
				_, err := fmt.Fprintln(s.env.Stdout, msg)
				return err
			})
		},
	}
}
