package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/allocator/placement"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/rtt"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// ErrRefused wraps the reasons every candidate allocator gave for not
// starting an instance.
var ErrRefused = errors.New("no allocator started the instance")

// registryReader is what a Placer reads from the registry.
// *registry.Client implements it; its methods are safe to call
// concurrently and return when ctx ends.
type registryReader interface {
	// GetService reads a service's definition.
	GetService(ctx context.Context, name string) (registry.ServiceInfo, error)
	// ListNodes reads every live allocator's node record.
	ListNodes(ctx context.Context) ([]registry.Node, error)
	// ListInstances reads the instance records of one service.
	ListInstances(ctx context.Context, service string) ([]registry.Instance, error)
}

// rttMeasurer measures round-trip times to allocators. *rtt.Tracker
// implements it.
type rttMeasurer interface {
	// Measure returns one Result per peer, in the order given (a Result
	// with Err set when a peer did not answer). It returns once every
	// peer has answered or timed out, or ctx has ended.
	Measure(ctx context.Context, peers []peer.ID) []rtt.Result
}

// addrBook learns the addresses of allocators from their node records,
// so that they can be pinged and asked. A libp2p peerstore implements it.
type addrBook interface {
	AddAddr(p peer.ID, addr ma.Multiaddr, ttl time.Duration)
}

// asker sends deploy requests to allocators. hostAsker implements it over
// libp2p.
type asker interface {
	// Send asks allocator p to run the instance r describes, as the
	// package-level Send does, refusals included: a *wire.Error with
	// code no_capacity, not_found, unsupported or runtime_error.
	Send(ctx context.Context, p peer.ID, r Request) (*Response, error)
}

// hostAsker asks allocators from a libp2p host.
type hostAsker struct{ h host.Host }

func (a hostAsker) Send(ctx context.Context, p peer.ID, r Request) (*Response, error) {
	return Send(ctx, a.h, p, r)
}

var (
	_ registryReader = (*registry.Client)(nil)
	_ rttMeasurer    = (*rtt.Tracker)(nil)
	_ addrBook       = peerstore.Peerstore(nil)
	_ asker          = hostAsker{}
)

// Placer starts instances near the node it runs on.
type Placer struct {
	self  peer.ID // the node it runs on: its RTT to itself is 0
	reg   registryReader
	addrs addrBook
	rtt   rttMeasurer
	ask   asker
	log   *slog.Logger
}

// NewPlacer returns a Placer that measures RTT from n and reads nodes and
// services through reg.
func NewPlacer(n *p2p.Node, reg *registry.Client, log *slog.Logger) *Placer {
	return newPlacer(n.ID(), reg, n.Host().Peerstore(), n.RTT(), hostAsker{n.Host()}, log)
}

func newPlacer(self peer.ID, reg registryReader, addrs addrBook, m rttMeasurer, ask asker, log *slog.Logger) *Placer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Placer{self: self, reg: reg, addrs: addrs, rtt: m, ask: ask, log: log}
}

// PlaceOptions refine a placement.
type PlaceOptions struct {
	// OnDemand marks the instance on-demand (see Request.OnDemand).
	OnDemand bool
	// SoftOnly considers only nodes within the service's soft RTT: for
	// finding a nearer instance than one already in use.
	SoftOnly bool
}

// ErrNoNearerNode means SoftOnly found no node within the soft RTT.
var ErrNoNearerNode = errors.New("no node within the soft RTT")

// Place starts an instance of service on the best allocator for this
// node: it lists the nodes, measures the RTT to each in parallel, ranks
// them (allocator/placement), and asks them in order, moving on when one
// refuses for lack of capacity or runtime. info may be nil, in which case
// it is read from the registry; the instance is of info's version.
func (p *Placer) Place(ctx context.Context, service string, info *registry.ServiceInfo, opts PlaceOptions) (*Response, error) {
	if info == nil {
		got, err := p.reg.GetService(ctx, service)
		if err != nil {
			return nil, err
		}
		info = &got
	}
	nodes, err := p.reg.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	insts, err := p.reg.ListInstances(ctx, service)
	if err != nil {
		return nil, err
	}
	ranked, err := placement.Rank(placement.Request{Service: service, Info: *info}, p.candidates(ctx, nodes, insts))
	if err != nil {
		return nil, err
	}
	if opts.SoftOnly {
		var near []placement.Ranked
		for _, r := range ranked {
			if r.WithinSoft {
				near = append(near, r)
			}
		}
		if len(near) == 0 {
			return nil, fmt.Errorf("%w for %s (%g ms)", ErrNoNearerNode, service, info.NetworkSoftReq.RTT)
		}
		ranked = near
	}
	var refusals []string
	for _, r := range ranked {
		id, err := peer.Decode(r.Node.PeerID)
		if err != nil {
			continue
		}
		resp, err := p.ask.Send(ctx, id, Request{Op: OpDeploy, Service: service, OnDemand: opts.OnDemand, Version: info.Version})
		if err == nil {
			p.log.Info("instance placed", "service", service, "node", id, "rtt_ms", r.RTT, "holds_image", r.HoldsImage, "reused", resp.Reused)
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		switch wire.CodeOf(err) {
		case wire.CodeNotFound, wire.CodeBadRequest:
			return nil, err // the service itself is the problem: nobody will do better
		}
		p.log.Info("allocator refused; trying the next", "service", service, "node", id, "err", err)
		refusals = append(refusals, fmt.Sprintf("%s: %v", p2p.ShortID(id), wire.MessageOf(err)))
	}
	return nil, fmt.Errorf("%w for %s: %s", ErrRefused, service, strings.Join(refusals, "; "))
}

// candidates measures the RTT to every node in parallel and counts the
// service's instances on each.
func (p *Placer) candidates(ctx context.Context, nodes []registry.Node, insts []registry.Instance) []placement.Candidate {
	perNode := map[string]int{}
	for _, in := range insts {
		perNode[in.Node]++
	}
	ids := make([]peer.ID, len(nodes))
	for i, n := range nodes {
		id, err := peer.Decode(n.PeerID)
		if err != nil {
			continue
		}
		ids[i] = id
		for _, a := range n.Addrs {
			if m, err := ma.NewMultiaddr(a); err == nil {
				p.addrs.AddAddr(id, m, peerstore.TempAddrTTL)
			}
		}
	}
	results := p.rtt.Measure(ctx, ids)
	out := make([]placement.Candidate, len(nodes))
	for i, n := range nodes {
		out[i] = placement.Candidate{Node: n, Instances: perNode[n.PeerID]}
		if ids[i] == p.self {
			out[i].RTT, out[i].RTTKnown = 0, true // this very node
		} else if results[i].Err == nil {
			out[i].RTT, out[i].RTTKnown = rtt.FromDuration(results[i].RTT).RTT, true
		}
	}
	return out
}
