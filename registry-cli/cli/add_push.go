package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/allocator/images"
	"github.com/physarum-p2p/physarum/registry"
)

// replica is a Docker allocator that holds a service's image once add has
// handed it over: the Replicas of add's -json output.
type replica struct {
	// Node is the allocator's name, else its short peer ID.
	Node   string `json:"Node"`
	PeerID string `json:"PeerID"`
	// Had: it held the image already; nothing was sent.
	Had bool `json:"Had"`
	// Bytes and Seconds are what the transfer sent and took (0 when Had).
	Bytes   int64   `json:"Bytes"`
	Seconds float64 `json:"Seconds"`
}

// pushFunc hands the image to one allocator; progress learns the bytes
// sent so far.
type pushFunc func(target nodeView, progress func(sent int64)) (images.PushResult, error)

// progressEvery is how often a long transfer reports its progress.
const progressEvery = time.Second

// distributeImage hands the image id, built or found on this machine's
// Docker daemon, to the replicas nearest Docker allocators before the
// service is registered, so that the nodes that run it need not fetch it
// from here. It fails when no Docker allocator takes it.
func (s *session) distributeImage(ctx context.Context, c *registry.Client, id, image string) ([]replica, error) {
	nodes, err := c.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	// Only the Docker allocators are pinged: the others cannot take it.
	var docker []registry.Node
	for _, n := range nodes {
		if slices.Contains(n.Runtimes, registry.RuntimeDocker) {
			docker = append(docker, n)
		}
	}
	targets, want := pushTargets(s.measureNodes(ctx, docker), s.add.replicas)
	if len(targets) == 0 {
		return nil, noReplicaError("no Docker allocator in the network can take image "+id, image)
	}
	if want < s.add.replicas {
		fmt.Fprintf(s.env.Stderr, "only %d Docker allocator(s) in the network for -replicas %d: pushing to every one\n", want, s.add.replicas)
	}
	store, err := images.NewDockerStore("")
	if err != nil {
		return nil, err
	}
	defer store.Close()
	// The push goes on as long as it makes progress (Ctrl-C stops it):
	// -timeout bounds talking to the registry, as for the build.
	size, err := store.Size(s.parent, id)
	if err != nil {
		return nil, fmt.Errorf("hand image %s to the network: %w", id, err)
	}
	h := s.p2p.Host()
	// Allocators that hold the image already (one on this very daemon,
	// say) count first: a push to them sends nothing, and makes them
	// announce it at once.
	targets = holdersFirst(targets, s.probeHolders(ctx, targets, id))
	push := func(t nodeView, progress func(int64)) (images.PushResult, error) {
		p, err := peer.Decode(t.PeerID)
		if err != nil {
			return images.PushResult{}, fmt.Errorf("peer ID %q: %w", t.PeerID, err)
		}
		// The addresses measureNodes gave the host are short-lived, and
		// an earlier transfer may have taken minutes.
		s.addAddrs(p, t.Addrs)
		return images.Push(s.parent, h, p, store, id, 0, progress)
	}
	got := distribute(s.env.Stderr, time.Now, id, size, targets, want, push)
	if len(got) == 0 {
		return nil, noReplicaError(fmt.Sprintf("no Docker allocator in the network took image %s (%d tried, each said why above)", id, len(targets)), image)
	}
	if len(got) < want {
		fmt.Fprintf(s.env.Stderr, "warning: only %d of %d Docker allocators took %s; the others fetch it from a holder when they need it\n",
			len(got), want, shortImage(id))
	}
	return got, nil
}

// noReplicaError says that the image found no taker, and what to do.
func noReplicaError(what, image string) error {
	return fmt.Errorf("%s; the service is not registered and %s stays built locally: "+
		"register it later with -use-existing-image, or give -replicas 0 to distribute images yourself", what, image)
}

// pushTargets orders the Docker allocators among views for a push: nearest
// first, then those that did not answer a ping (in the registry's order).
// want is how many must end up with the image: replicas, or every Docker
// allocator when there are fewer. The targets past want are the spares,
// tried when one before them refuses.
func pushTargets(views []nodeView, replicas int) (targets []nodeView, want int) {
	for _, v := range views {
		if slices.Contains(v.Runtimes, registry.RuntimeDocker) {
			targets = append(targets, v)
		}
	}
	slices.SortStableFunc(targets, func(a, b nodeView) int {
		switch {
		case a.RTT == 0 && b.RTT == 0:
			return 0
		case a.RTT == 0:
			return 1
		case b.RTT == 0:
			return -1
		}
		return cmp.Compare(a.RTT, b.RTT)
	})
	return targets, min(replicas, len(targets))
}

// probeHolders asks every target, in parallel, whether it holds image id;
// one that does not answer within a few seconds counts as not holding it.
func (s *session) probeHolders(ctx context.Context, targets []nodeView, id string) map[string]bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	has := make([]bool, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		p, err := peer.Decode(t.PeerID)
		if err != nil {
			continue
		}
		wg.Go(func() { has[i], _ = images.Has(ctx, s.p2p.Host(), p, id) })
	}
	wg.Wait()
	out := make(map[string]bool, len(targets))
	for i, t := range targets {
		if has[i] {
			out[t.PeerID] = true
		}
	}
	return out
}

// holdersFirst moves the targets that hold the image ahead of the others,
// keeping the order within each.
func holdersFirst(targets []nodeView, holds map[string]bool) []nodeView {
	out := make([]nodeView, 0, len(targets))
	for _, t := range targets {
		if holds[t.PeerID] {
			out = append(out, t)
		}
	}
	for _, t := range targets {
		if !holds[t.PeerID] {
			out = append(out, t)
		}
	}
	return out
}

// distribute pushes the image to targets in order until want of them hold
// it. One that held it already counts; one that refuses or cannot be
// reached is skipped with a line on w. Progress goes to w: a line per
// target, one at most every progressEvery during a transfer, and the
// result.
func distribute(w io.Writer, now func() time.Time, id string, size int64, targets []nodeView, want int, push pushFunc) []replica {
	var got []replica
	for _, t := range targets {
		if len(got) == want {
			break
		}
		name := nodeName(t.Node)
		where := "no answer to ping"
		switch {
		case t.RTT >= 0.1:
			where = fmt.Sprintf("%.1f ms", t.RTT)
		case t.RTT > 0:
			where = "<0.1 ms"
		}
		fmt.Fprintf(w, "pushing %s (%s) to %s (%s)\n", shortImage(id), mib(size), name, where)
		start := now()
		last := start
		res, err := push(t, func(sent int64) {
			if at := now(); at.Sub(last) >= progressEvery {
				last = at
				fmt.Fprintf(w, "  %s: %s of %s, %s\n", name, mib(sent), mib(size), rate(sent, at.Sub(start)))
			}
		})
		if err != nil {
			fmt.Fprintf(w, "%s did not take it: %s; trying the next\n", name, oneLine(err))
			continue
		}
		r := replica{Node: name, PeerID: t.PeerID, Had: res.Had, Bytes: res.Bytes, Seconds: res.Took.Seconds()}
		if r.Had {
			fmt.Fprintf(w, "%s had it already\n", name)
		} else {
			fmt.Fprintf(w, "%s has it: %s in %.2f s, %s\n", name, mib(res.Bytes), r.Seconds, rate(res.Bytes, res.Took))
		}
		got = append(got, r)
	}
	return got
}

// nodeName is how progress lines name a node: its -name, else its short
// peer ID.
func nodeName(n registry.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return short(n.PeerID)
}

// shortImage abbreviates an image ID for progress lines ("sha256:0123456789ab…").
func shortImage(id string) string {
	if hex, ok := strings.CutPrefix(id, "sha256:"); ok && len(hex) > 12 {
		return "sha256:" + hex[:12] + "…"
	}
	return id
}

// mib formats a size in MiB, or KiB below one MiB.
func mib(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// rate formats a transfer rate in MiB/s.
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "- MiB/s"
	}
	r := float64(n) / (1 << 20) / d.Seconds()
	if r >= 10 {
		return fmt.Sprintf("%.0f MiB/s", r)
	}
	return fmt.Sprintf("%.1f MiB/s", r)
}
