package cli

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/allocator/images"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

func dockerNode(name string, rtt float64, runtimes ...string) nodeView {
	return nodeView{Node: registry.Node{PeerID: "12D3KooW" + name + "-peer-id-of-this-node", Name: name, Runtimes: runtimes}, RTT: rtt}
}

func names(views []nodeView) []string {
	var out []string
	for _, v := range views {
		out = append(out, v.Name)
	}
	return out
}

func TestPushTargetsAreDockerAllocatorsNearestFirst(t *testing.T) {
	views := []nodeView{
		dockerNode("far", 9.5, "docker"),
		dockerNode("process-only", 0.1, "process"),
		dockerNode("silent-1", 0, "docker", "process"),
		dockerNode("near", 0.4, "process", "docker"),
		dockerNode("no-runtime", 0.2),
		dockerNode("mid", 2, "docker"),
		dockerNode("silent-2", 0, "docker"),
	}
	for _, tc := range []struct {
		replicas int
		want     int
	}{{1, 1}, {2, 2}, {5, 5}, {9, 5}} {
		targets, want := pushTargets(views, tc.replicas)
		// Unreachable ones last, in the registry's order: spares.
		if got := names(targets); !slices.Equal(got, []string{"near", "mid", "far", "silent-1", "silent-2"}) {
			t.Errorf("replicas %d: targets %v", tc.replicas, got)
		}
		if want != tc.want {
			t.Errorf("replicas %d: want %d, expected %d (capped at the Docker allocators)", tc.replicas, want, tc.want)
		}
	}
	if targets, want := pushTargets(views[1:2], 2); len(targets) != 0 || want != 0 {
		t.Errorf("no Docker allocator: %v, want %d", names(targets), want)
	}
}

func TestHoldersComeFirstInTheirOrder(t *testing.T) {
	targets := []nodeView{dockerNode("a", 1, "docker"), dockerNode("b", 2, "docker"), dockerNode("c", 3, "docker"), dockerNode("d", 0, "docker")}
	holds := map[string]bool{targets[2].PeerID: true, targets[3].PeerID: true}
	if got := names(holdersFirst(targets, holds)); !slices.Equal(got, []string{"c", "d", "a", "b"}) {
		t.Fatalf("order %v, want the holders c, d first, then a, b", got)
	}
	if got := names(holdersFirst(targets, nil)); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("with no holder the order changed: %v", got)
	}
}

// fakeClock advances by step at each reading.
func fakeClock(step time.Duration) func() time.Time {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { now = now.Add(step); return now }
}

const testImage = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestDistributeSkipsRefusalsUntilEnoughHoldIt(t *testing.T) {
	targets := []nodeView{
		dockerNode("busy", 0.04, "docker"),
		dockerNode("holder", 0.7, "docker"),
		dockerNode("", 1.2, "docker"), // no -name: its short peer ID
		dockerNode("spare", 3, "docker"),
	}
	var tried []string
	push := func(t nodeView, progress func(int64)) (images.PushResult, error) {
		tried = append(tried, t.PeerID)
		switch t.Name {
		case "busy":
			return images.PushResult{}, wire.Errorf(wire.CodeBusy, "already taking 3 images;\ntry again")
		case "holder":
			return images.PushResult{Had: true}, nil
		}
		for sent := int64(1 << 20); sent <= 4<<20; sent += 1 << 20 {
			progress(sent)
		}
		return images.PushResult{Bytes: 4 << 20, Took: 2 * time.Second}, nil
	}
	var w bytes.Buffer
	// Each reading of the clock is 400 ms on: one progress line, at 1.2 s.
	got := distribute(&w, fakeClock(400*time.Millisecond), testImage, 4<<20, targets, 2, push)

	if len(tried) != 3 || tried[2] != targets[2].PeerID {
		t.Fatalf("tried %v: want busy, holder, then the third (not the spare)", tried)
	}
	want := []replica{
		{Node: "holder", PeerID: targets[1].PeerID, Had: true},
		{Node: short(targets[2].PeerID), PeerID: targets[2].PeerID, Bytes: 4 << 20, Seconds: 2},
	}
	if !slices.Equal(got, want) {
		t.Errorf("replicas %+v, want %+v", got, want)
	}
	lines := strings.Split(strings.TrimSpace(w.String()), "\n")
	third := short(targets[2].PeerID)
	wantLines := []string{
		"pushing sha256:0123456789ab… (4.0 MiB) to busy (<0.1 ms)",
		"busy did not take it: busy: already taking 3 images; try again; trying the next",
		"pushing sha256:0123456789ab… (4.0 MiB) to holder (0.7 ms)",
		"holder had it already",
		"pushing sha256:0123456789ab… (4.0 MiB) to " + third + " (1.2 ms)",
		"  " + third + ": 3.0 MiB of 4.0 MiB, 2.5 MiB/s",
		third + " has it: 4.0 MiB in 2.00 s, 2.0 MiB/s",
	}
	if !slices.Equal(lines, wantLines) {
		t.Errorf("stderr:\n%s\nwant:\n%s", w.String(), strings.Join(wantLines, "\n"))
	}
}

func TestDistributeWithNoTakerReturnsNothing(t *testing.T) {
	targets := []nodeView{dockerNode("a", 0, "docker"), dockerNode("b", 0, "docker")}
	refuse := func(nodeView, func(int64)) (images.PushResult, error) {
		return images.PushResult{}, errors.New("open image stream: protocol not supported")
	}
	var w bytes.Buffer
	if got := distribute(&w, time.Now, testImage, 100<<10, targets, 2, refuse); len(got) != 0 {
		t.Fatalf("replicas %+v from refusals", got)
	}
	if out := w.String(); !strings.Contains(out, "to a (no answer to ping)") || strings.Count(out, "did not take it") != 2 {
		t.Errorf("stderr:\n%s", out)
	}
}

func TestNegativeReplicasIsAUsageError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	env := Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	code := Run(t.Context(), []string{"add", "-replicas", "-1", "svc.json", "img", "svc"}, env)
	if code != ExitUsage || !strings.Contains(stderr.String(), "-replicas -1") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
