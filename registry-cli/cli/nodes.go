package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/rtt"
	"github.com/physarum-p2p/physarum/registry"
)

// nodeView is a node record with the RTT measured from here.
type nodeView struct {
	registry.Node
	// RTT is the round trip from this CLI to the node, in ms (0: unreachable).
	RTT float64 `json:"RTT"`
}

func nodesCommand() *command {
	return &command{
		name: "nodes", summary: "List allocators with capacity, free resources and RTT from here",
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 0, "no arguments")
			if err != nil {
				return err
			}
			nodes, err := c.ListNodes(ctx)
			if err != nil {
				return err
			}
			views := s.measureNodes(ctx, nodes)
			return show(s, views, func(views []nodeView) error { return writeNodes(s.env.Stdout, views) })
		},
	}
}

// writeNodes prints the nodes table. IMAGES counts the registered
// services' images the node's Docker daemon holds.
func writeNodes(w io.Writer, views []nodeView) error {
	t := newTable(w, "NODE", "RUNTIMES", "CPU FREE/TOTAL", "MEMORY FREE/TOTAL", "INSTANCES", "IMAGES", "RTT", "LABELS", "NOTE")
	for _, v := range views {
		t.row(v.PeerID, strings.Join(v.Runtimes, ","),
			fmt.Sprintf("%d/%dm", v.FreeCPU, v.CPU), fmt.Sprintf("%d/%dMiB", v.FreeMemory, v.Memory),
			strconv.Itoa(v.Instances), strconv.Itoa(len(v.Images)), ms(v.RTT), labels(v.Labels), v.Message)
	}
	return t.flush()
}

// measureNodes pings every node in parallel.
func (s *session) measureNodes(ctx context.Context, nodes []registry.Node) []nodeView {
	ids := make([]peer.ID, 0, len(nodes))
	for _, n := range nodes {
		id, err := peer.Decode(n.PeerID)
		if err != nil {
			ids = append(ids, "")
			continue
		}
		s.addAddrs(id, n.Addrs)
		ids = append(ids, id)
	}
	results := s.p2p.RTT().Measure(ctx, ids)
	out := make([]nodeView, len(nodes))
	for i, n := range nodes {
		out[i] = nodeView{Node: n}
		if results[i].Err == nil {
			out[i].RTT = rtt.FromDuration(results[i].RTT).RTT
		}
	}
	return out
}

func labels(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	if len(parts) == 0 {
		return "-"
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// addAddrs tells the host where a peer from a registry record listens.
func (s *session) addAddrs(id peer.ID, addrs []string) {
	for _, a := range addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			s.p2p.Host().Peerstore().AddAddr(id, m, peerstore.TempAddrTTL)
		}
	}
}
