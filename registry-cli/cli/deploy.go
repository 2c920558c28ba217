package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/allocator/deploy"
)

type deployOptions struct {
	node     string
	onDemand bool
}

func deployCommand() *command {
	var o deployOptions
	return &command{
		name: "deploy", args: "<service-name>",
		summary: "Start an instance of a service: on -node, or on the best node for this machine",
		flags: func(fs *flag.FlagSet, _ *session) {
			fs.StringVar(&o.node, "node", "", "peer ID of the allocator to start it on (default: placed by RTT from here and free capacity)")
			fs.BoolVar(&o.onDemand, "on-demand", false, "mark it on-demand: culled when idle, and shared with other on-demand requests")
		},
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 1, "<service-name>")
			if err != nil {
				return err
			}
			var resp *deploy.Response
			if o.node != "" {
				id, err := peer.Decode(o.node)
				if err != nil {
					return usagef("-node %q: not a peer ID", o.node)
				}
				if err := s.dialNode(ctx, id); err != nil {
					return err
				}
				resp, err = deploy.Deploy(ctx, s.p2p.Host(), id, args[0], o.onDemand)
				if err != nil {
					return err
				}
			} else if resp, err = deploy.NewPlacer(s.p2p, c, nil).Place(ctx, args[0], nil, deploy.PlaceOptions{OnDemand: o.onDemand}); err != nil {
				return err
			}
			if s.json {
				return s.printJSON(resp.Instance)
			}
			in := resp.Instance
			verb := "started"
			if resp.Reused {
				verb = "reusing"
			}
			fmt.Fprintf(s.env.Stdout, "%s %s on %s (%s, proxy %s)\n", verb, in.ID, in.Node, in.Runtime, in.PeerID)
			return nil
		},
	}
}

func stopCommand() *command {
	return &command{
		name: "stop", args: "<instance-id>", summary: "Stop an instance",
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 1, "<instance-id>")
			if err != nil {
				return err
			}
			insts, err := c.ListInstances(ctx, "")
			if err != nil {
				return err
			}
			for _, in := range insts {
				if in.ID != args[0] {
					continue
				}
				id, err := peer.Decode(in.Node)
				if err != nil {
					return err
				}
				if err := s.dialNode(ctx, id); err != nil {
					return err
				}
				if err := deploy.Stop(ctx, s.p2p.Host(), id, in.ID); err != nil {
					return err
				}
				if s.json {
					return s.printJSON(map[string]string{"Stopped": in.ID})
				}
				fmt.Fprintf(s.env.Stdout, "stopped %s\n", in.ID)
				return nil
			}
			return fmt.Errorf("no instance %q (see registry-cli instances)", args[0])
		},
	}
}

// dialNode connects to an allocator using the addresses in its node
// record.
func (s *session) dialNode(ctx context.Context, id peer.ID) error {
	nodes, err := s.client.ListNodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if n.PeerID == id.String() {
			s.addAddrs(id, n.Addrs)
			return nil
		}
	}
	return fmt.Errorf("no allocator %s in the registry (see registry-cli nodes)", id)
}
