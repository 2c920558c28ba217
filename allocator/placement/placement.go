// Package placement decides which allocators to ask for a new instance of a
// service: it filters the candidate nodes, then ranks the rest, best first.
// It is pure decision logic: no I/O, no clocks, no randomness, so the same
// input always gives the same order.
//
// Filters, in the order a rejected node is reported under:
//
//  1. runtime: the node offers a runtime that can run the service
//     (ServiceInfo.Runtimes against Node.Runtimes);
//  2. labels: the node carries every required label with the required value;
//  3. RTT: with a hard RTT requirement (NetworkHardReq.RTT > 0), the node's
//     RTT from the requester is known and at most the requirement;
//  4. capacity: FreeCPU >= CpuReq and FreeMemory >= MemoryReq.
//
// Ranking, each criterion deciding only between nodes equal on the ones
// before it:
//
//  1. nodes within the soft RTT (NetworkSoftReq.RTT; 0 means every node is
//     within it) ahead of the others;
//  2. nodes that need not fetch the service's image ahead of those that
//     must: a node fetches when the service has a DockerHash, the node
//     offers the docker runtime (which it then runs the service under) and
//     its Node.Images lacks the DockerHash. A node that runs the service as
//     a process needs no image, and for a service without DockerHash no
//     node does;
//  3. more free capacity after placing, compared in steps of HeadroomStep;
//  4. fewer instances of this service already on the node (spreading);
//  5. lower RTT (unknown RTT last);
//  6. peer ID, ascending.
package placement

import (
	"cmp"
	"math"
	"slices"

	"github.com/physarum-p2p/physarum/registry"
)

// HeadroomStep is the granularity at which free capacity is compared:
// nodes whose headroom differs by less than a step (5% of the node) are
// ranked by spreading and RTT instead, so that a sliver of free memory does
// not pile every instance of a service onto one node.
const HeadroomStep = 0.05

// Candidate is a node that might run the service, as the requester sees it.
type Candidate struct {
	// Node is the allocator's registry record.
	Node registry.Node
	// RTT is the measured round-trip time from the requester to the node,
	// in milliseconds. It is only read when RTTKnown is set.
	RTT float64
	// RTTKnown says RTT was measured. A node with unknown RTT is excluded
	// when the service has a hard RTT requirement, and ranked after the
	// nodes with a known RTT otherwise.
	RTTKnown bool
	// Instances counts the instances of this service the node already runs.
	Instances int
}

// Request is the service to place.
type Request struct {
	// Service is the service's name; it only appears in errors.
	Service string
	// Info is the service's registry record: runtimes, RTT requirements,
	// CPU and memory.
	Info registry.ServiceInfo
	// Labels the node must carry, with exactly these values. Empty matches
	// every node.
	Labels map[string]string
}

// Ranked is a candidate that passed every filter, with what ranked it.
type Ranked struct {
	Candidate
	// WithinSoft says the node is within the service's soft RTT.
	WithinSoft bool
	// HoldsImage says the node offers the docker runtime and its Docker
	// daemon already holds the service's image (Node.Images has
	// ServiceInfo.DockerHash), so an instance starts without fetching it.
	// It is false for a service without DockerHash and on a node without
	// the docker runtime, which need no image: such a node ranks with the
	// holders, ahead of the nodes that must fetch the image.
	HoldsImage bool
	// Headroom is the fraction of the node's capacity left after placing
	// the instance: the smaller of the CPU and memory fractions, in [0, 1].
	Headroom float64

	// fetches says the node would run the service under Docker without
	// holding its image, so it must fetch the image first.
	fetches bool
}

// Rank filters candidates for req and returns the rest, best first. When
// none pass it returns a *Rejections, which matches ErrNoCandidate with
// errors.Is. Give one Candidate per node; candidates is not modified.
func Rank(req Request, candidates []Candidate) ([]Ranked, error) {
	rej := &Rejections{
		Service:    req.Service,
		Candidates: len(candidates),
		Runtimes:   req.Info.Runtimes(),
		Labels:     req.Labels,
		HardRTT:    req.Info.NetworkHardReq.RTT,
		CPU:        req.Info.CpuReq,
		Memory:     req.Info.MemoryReq,
	}
	var out []Ranked
	for _, c := range candidates {
		if reason, ok := filter(req, c); !ok {
			rej.add(c, reason)
			continue
		}
		holds, fetches := imageAt(req.Info, c.Node)
		out = append(out, Ranked{
			Candidate:  c,
			WithinSoft: withinSoft(req.Info.NetworkSoftReq.RTT, c),
			HoldsImage: holds,
			Headroom:   headroom(req.Info, c.Node),
			fetches:    fetches,
		})
	}
	if len(out) == 0 {
		return nil, rej
	}
	slices.SortStableFunc(out, compare)
	return out, nil
}

// filter reports the first filter c fails, in the documented order.
func filter(req Request, c Candidate) (Reason, bool) {
	if !hasRuntime(req.Info.Runtimes(), c.Node.Runtimes) {
		return ReasonRuntime, false
	}
	for k, v := range req.Labels {
		if got, ok := c.Node.Labels[k]; !ok || got != v {
			return ReasonLabels, false
		}
	}
	if hard := req.Info.NetworkHardReq.RTT; hard > 0 {
		if !c.RTTKnown || math.IsNaN(c.RTT) {
			return ReasonNoRTT, false
		}
		if c.RTT > hard {
			return ReasonTooFar, false
		}
	}
	if c.Node.FreeCPU < req.Info.CpuReq {
		return ReasonCPU, false
	}
	if c.Node.FreeMemory < req.Info.MemoryReq {
		return ReasonMemory, false
	}
	return "", true
}

func hasRuntime(service, node []string) bool {
	for _, r := range service {
		if slices.Contains(node, r) {
			return true
		}
	}
	return false
}

func withinSoft(soft float64, c Candidate) bool {
	if soft <= 0 {
		return true
	}
	return c.RTTKnown && !math.IsNaN(c.RTT) && c.RTT <= soft
}

// imageAt says whether n holds the service's image, or must fetch it before
// an instance can start. A node that offers the docker runtime runs a
// service with a DockerHash under it (the preferred runtime); a node that
// does not needs no image, and neither holds nor fetches one.
func imageAt(info registry.ServiceInfo, n registry.Node) (holds, fetches bool) {
	if info.DockerHash == "" || !slices.Contains(n.Runtimes, registry.RuntimeDocker) {
		return false, false
	}
	holds = slices.Contains(n.Images, info.DockerHash)
	return holds, !holds
}

// headroom is the smaller of the CPU and memory fractions the node has left
// after placing the instance. A dimension the node offers no capacity in
// counts as full.
func headroom(info registry.ServiceInfo, n registry.Node) float64 {
	return min(fraction(n.FreeCPU-info.CpuReq, n.CPU), fraction(n.FreeMemory-info.MemoryReq, n.Memory))
}

func fraction(free, capacity int) float64 {
	if capacity <= 0 || free <= 0 {
		return 0
	}
	return min(float64(free)/float64(capacity), 1)
}

// step turns a headroom into the bucket it is compared in.
func step(h float64) int {
	return int(math.Floor(h/HeadroomStep + 1e-9))
}

// compare orders a before b when a is the better choice.
func compare(a, b Ranked) int {
	if c := trueFirst(a.WithinSoft, b.WithinSoft); c != 0 {
		return c
	}
	if c := trueFirst(!a.fetches, !b.fetches); c != 0 {
		return c
	}
	if c := cmp.Compare(step(b.Headroom), step(a.Headroom)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Instances, b.Instances); c != 0 {
		return c
	}
	if c := compareRTT(a.Candidate, b.Candidate); c != 0 {
		return c
	}
	return cmp.Compare(a.Node.PeerID, b.Node.PeerID)
}

// trueFirst orders true before false.
func trueFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

func compareRTT(a, b Candidate) int {
	ak, bk := a.RTTKnown && !math.IsNaN(a.RTT), b.RTTKnown && !math.IsNaN(b.RTT)
	switch {
	case ak && bk:
		return cmp.Compare(a.RTT, b.RTT)
	case ak:
		return -1
	case bk:
		return 1
	}
	return 0
}
