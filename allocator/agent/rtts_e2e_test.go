package agent_test

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/registry"
)

// rttAllocators starts an allocator on a node of its own for each delay
// (netdelay: the node delays every byte it writes by it, so the RTT
// between two of them is the sum of their delays), reading the node list
// at every round.
func rttAllocators(w *world, delays ...time.Duration) []*p2ptest.Node {
	w.t.Helper()
	nodes := make([]*p2ptest.Node, len(delays))
	for i, d := range delays {
		_, nodes[i] = w.allocator(allocOpts{cfg: agent.Config{PeerListEvery: 500 * time.Millisecond}, delay: d})
	}
	return nodes
}

// TestAllocatorsStartedOneAfterAnotherSoonMeasureEachOther: with the
// default node list period (30 s), the first allocator, which found no
// other at its start, lists the later ones within seconds: every record
// has both others long before 30 s.
func TestAllocatorsStartedOneAfterAnotherSoonMeasureEachOther(t *testing.T) {
	w := newWorld(t)
	var nodes []*p2ptest.Node
	for range 3 {
		_, n := w.allocator(allocOpts{})
		nodes = append(nodes, n)
	}
	start := time.Now()
	publishedRTTs(t, w, nodes, func(int, int, float64) error { return nil })
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("every allocator measured the others after %s; want well under the 30 s list period", took)
	}
}

// publishedRTTs waits until the record of every node in nodes, as the
// registry holds it, has an RTT to each of the others, and returns them:
// from, to (peer IDs) -> ms.
func publishedRTTs(t *testing.T, w *world, nodes []*p2ptest.Node, ok func(from, to int, ms float64) error) map[[2]int]float64 {
	t.Helper()
	index := map[string]int{}
	for i, n := range nodes {
		index[n.ID().String()] = i
	}
	var got map[[2]int]float64
	eventually.Succeeds(t, 30*time.Second, func() error {
		recs, err := w.rc.ListNodes(t.Context())
		if err != nil {
			return err
		}
		got = map[[2]int]float64{}
		var problems []string
		for _, rec := range recs {
			from, mine := index[rec.PeerID]
			if !mine {
				continue
			}
			if !slices.IsSortedFunc(rec.RTTs, func(x, y registry.PeerRTT) int { return cmp.Compare(x.RTT, y.RTT) }) {
				t.Errorf("node %d's RTTs are not nearest first: %+v", from, rec.RTTs)
			}
			for _, r := range rec.RTTs {
				to, known := index[r.PeerID]
				if !known || to == from {
					t.Errorf("node %d publishes an RTT to %s, not another allocator", from, r.PeerID)
					continue
				}
				if err := ok(from, to, r.RTT); err != nil {
					problems = append(problems, err.Error())
				}
				got[[2]int{from, to}] = r.RTT
			}
		}
		for from := range nodes {
			for to := range nodes {
				if _, ok := got[[2]int{from, to}]; from != to && !ok {
					problems = append(problems, fmt.Sprintf("no RTT from node %d to node %d", from, to))
				}
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		return nil
	})
	return got
}

// TestNodeRecordsCarryRTTsToTheOtherAllocators: three allocators on
// loopback each publish, in their records in the registry, an RTT to
// each of the two others, and none to themselves or to nodes that run no
// allocator (the registry's, the client's).
func TestNodeRecordsCarryRTTsToTheOtherAllocators(t *testing.T) {
	w := newWorld(t)
	nodes := rttAllocators(w, 0, 0, 0)
	got := publishedRTTs(t, w, nodes, func(from, to int, ms float64) error {
		if ms < 0 || ms > 50 {
			return fmt.Errorf("%d to %d: %v ms on loopback", from, to, ms)
		}
		return nil
	})
	t.Logf("published RTTs (ms): %v", got)
}

// TestPublishedRTTsMatchTheSimulatedDelays: allocators at simulated
// distances (netdelay, in user space) publish RTTs to one another that
// match those distances: the sum of the two nodes' one-way delays.
func TestPublishedRTTsMatchTheSimulatedDelays(t *testing.T) {
	w := newWorld(t)
	delays := []time.Duration{0, 15 * time.Millisecond, 40 * time.Millisecond}
	nodes := rttAllocators(w, delays...)
	got := publishedRTTs(t, w, nodes, func(from, to int, ms float64) error {
		want := float64(delays[from]+delays[to]) / float64(time.Millisecond)
		if ms < want-1 || ms > want+max(3, 0.15*want) {
			return fmt.Errorf("%d to %d: %v ms published, simulated %v ms", from, to, ms, want)
		}
		return nil
	})
	t.Logf("published RTTs (ms): %v", got)
}
