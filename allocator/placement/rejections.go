package placement

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Reason names the filter a node failed.
type Reason string

// Reasons a node is not a candidate, in filter order.
const (
	ReasonRuntime Reason = "runtime" // offers no runtime that can run the service
	ReasonLabels  Reason = "labels"  // lacks a required label value
	ReasonNoRTT   Reason = "no_rtt"  // RTT unknown and the service has a hard RTT
	ReasonTooFar  Reason = "too_far" // RTT above the service's hard RTT
	ReasonCPU     Reason = "cpu"     // FreeCPU below CpuReq
	ReasonMemory  Reason = "memory"  // FreeMemory below MemoryReq
)

// Rejections says why no candidate passed the filters. Each node is
// counted once, under the first filter it failed. Its Error is one line a
// user can act on, and errors.Is(r, ErrNoCandidate) holds.
type Rejections struct {
	// Service is the service's name.
	Service string
	// Candidates is how many nodes were considered.
	Candidates int
	// Counts is how many nodes failed each filter.
	Counts map[Reason]int
	// Nodes maps each rejected node's peer ID to its reason.
	Nodes map[string]Reason

	// What was asked for, for the message.
	Runtimes []string          // runtimes that can run the service
	Labels   map[string]string // required labels
	HardRTT  float64           // ms; 0 = no limit
	CPU      int               // millicores
	Memory   int               // MiB

	// The best that was on offer among the rejected nodes, for the message.
	NearestRTT float64 // lowest RTT among the nodes too far (ms)
	MostCPU    int     // most FreeCPU among the nodes short of CPU
	MostMemory int     // most FreeMemory among the nodes short of memory
}

// add counts c as rejected for reason and keeps the best offer seen among
// the rejected nodes.
func (r *Rejections) add(c Candidate, reason Reason) {
	if r.Counts == nil {
		r.Counts = map[Reason]int{}
		r.Nodes = map[string]Reason{}
	}
	r.Counts[reason]++
	r.Nodes[c.Node.PeerID] = reason
	switch reason {
	case ReasonTooFar:
		if r.Counts[ReasonTooFar] == 1 || c.RTT < r.NearestRTT {
			r.NearestRTT = c.RTT
		}
	case ReasonCPU:
		if r.Counts[ReasonCPU] == 1 || c.Node.FreeCPU > r.MostCPU {
			r.MostCPU = c.Node.FreeCPU
		}
	case ReasonMemory:
		if r.Counts[ReasonMemory] == 1 || c.Node.FreeMemory > r.MostMemory {
			r.MostMemory = c.Node.FreeMemory
		}
	}
}

// Is makes errors.Is(err, ErrNoCandidate) hold.
func (r *Rejections) Is(target error) bool { return target == ErrNoCandidate }

func (r *Rejections) Error() string {
	var b strings.Builder
	if r.Service != "" {
		b.WriteString("no node can run service " + r.Service + ": ")
	} else {
		b.WriteString("no node can run the service: ")
	}
	if r.Candidates == 0 {
		b.WriteString("no allocator nodes are known")
		return b.String()
	}
	var parts []string
	if n := r.Counts[ReasonTooFar]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d too far (hard RTT %s ms, nearest %s ms)", n, ms(r.HardRTT), ms(r.NearestRTT)))
	}
	if n := r.Counts[ReasonNoRTT]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d with no RTT measured (hard RTT %s ms)", n, ms(r.HardRTT)))
	}
	if n := r.Counts[ReasonCPU] + r.Counts[ReasonMemory]; n > 0 {
		var needs []string
		if r.Counts[ReasonCPU] > 0 {
			needs = append(needs, fmt.Sprintf("%d millicores, at most %d free", r.CPU, max(r.MostCPU, 0)))
		}
		if r.Counts[ReasonMemory] > 0 {
			needs = append(needs, fmt.Sprintf("%d MiB, at most %d free", r.Memory, max(r.MostMemory, 0)))
		}
		parts = append(parts, fmt.Sprintf("%d without capacity (needs %s)", n, strings.Join(needs, "; ")))
	}
	if n := r.Counts[ReasonRuntime]; n > 0 {
		if len(r.Runtimes) == 0 {
			parts = append(parts, fmt.Sprintf("%d without a runtime for it (the service has neither DockerHash nor Exec)", n))
		} else {
			parts = append(parts, fmt.Sprintf("%d without the %s runtime", n, strings.Join(r.Runtimes, " or ")))
		}
	}
	if n := r.Counts[ReasonLabels]; n > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
			kv = append(kv, k+"="+r.Labels[k])
		}
		parts = append(parts, fmt.Sprintf("%d without labels %s", n, strings.Join(kv, ",")))
	}
	b.WriteString(strings.Join(parts, ", "))
	return b.String()
}

// ms formats a millisecond value without trailing zeros.
func ms(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}
