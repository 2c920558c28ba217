package docker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/physarum-p2p/physarum/allocator/runtime"
)

// The testdata files are `docker inspect` output recorded from Docker
// 20.10 (API 1.41), one container per state, labelled as this runtime
// labels them for node "node-a".
func readInspect(t *testing.T, name string) container.InspectResponse {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var c container.InspectResponse
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return c
}

func TestStatusFromRecordedInspect(t *testing.T) {
	for _, tc := range []struct {
		file     string
		state    runtime.State
		restarts int
		exitCode int
		started  bool
	}{
		{"inspect-running.json", runtime.StateRunning, 0, 0, true},
		// Between two runs of a crash loop: still up, as far as the
		// allocator is concerned.
		{"inspect-restarting.json", runtime.StateRunning, 3, 3, true},
		{"inspect-exited.json", runtime.StateExited, 2, 3, true},
		// Created but never started (a Start that failed half way): down.
		{"inspect-created.json", runtime.StateExited, 0, 0, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := readInspect(t, tc.file)
			st := status(c)
			wantID := c.Config.Labels[runtime.LabelInstance]
			if st.ID != wantID || st.State != tc.state || st.Restarts != tc.restarts || st.ExitCode != tc.exitCode || st.Ref != c.ID {
				t.Errorf("status = %+v; want ID %s, state %s, %d restarts, exit code %d, ref %s",
					st, wantID, tc.state, tc.restarts, tc.exitCode, c.ID)
			}
			if started := !st.StartedAt.IsZero(); started != tc.started {
				t.Errorf("StartedAt %s; want set: %v", st.StartedAt, tc.started)
			}
			if tc.started && st.StartedAt.Before(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("StartedAt %s not parsed", st.StartedAt)
			}
			if st.Labels[runtime.LabelNode] != "node-a" {
				t.Errorf("labels %v; want the container's", st.Labels)
			}
		})
	}
}

func TestOwnsOnlyThisNodesContainers(t *testing.T) {
	c := readInspect(t, "inspect-running.json")
	if !(&Runtime{node: "node-a"}).owns(c.Config) {
		t.Error("node-a does not own its own container")
	}
	if (&Runtime{node: "node-b"}).owns(c.Config) {
		t.Error("node-b owns node-a's container")
	}
	unmanaged := *c.Config
	unmanaged.Labels = map[string]string{runtime.LabelNode: "node-a"}
	if (&Runtime{node: "node-a"}).owns(&unmanaged) {
		t.Error("a container without physarum.managed=true is owned")
	}
}

// TestHostConfigMatchesRecorded checks the limits and restart policy the
// runtime asks for against what the daemon recorded for the same request
// made with `docker run --cpus 0.25 --memory 64m --restart on-failure:3
// --network host`.
func TestHostConfigMatchesRecorded(t *testing.T) {
	rec := readInspect(t, "inspect-running.json").HostConfig
	hc := hostConfig(runtime.Spec{CPU: 250, Memory: 64, MaxRestarts: 3})
	if hc.NanoCPUs != rec.NanoCPUs || hc.Memory != rec.Memory || hc.RestartPolicy != rec.RestartPolicy || hc.NetworkMode != rec.NetworkMode {
		t.Errorf("host config: cpus %d, memory %d, restart %+v, network %s; docker recorded %d, %d, %+v, %s",
			hc.NanoCPUs, hc.Memory, hc.RestartPolicy, hc.NetworkMode, rec.NanoCPUs, rec.Memory, rec.RestartPolicy, rec.NetworkMode)
	}
	none := hostConfig(runtime.Spec{})
	if none.NanoCPUs != 0 || none.Memory != 0 || none.RestartPolicy.Name != container.RestartPolicyDisabled {
		t.Errorf("host config of a spec without limits or restarts: %+v", none)
	}
}

func TestConfigLabelsAndEnv(t *testing.T) {
	r := &Runtime{node: "node-a"}
	cfg := r.config(runtime.Spec{
		ID:      "web-1",
		Image:   "svc:1",
		Command: []string{"/svc", "-v"},
		Env:     map[string]string{"B": "2", "A": "1"},
		// The runtime's own labels win over the spec's.
		Labels: map[string]string{runtime.LabelService: "web", runtime.LabelNode: "forged"},
	})
	want := map[string]string{
		runtime.LabelManaged:  "true",
		runtime.LabelInstance: "web-1",
		runtime.LabelNode:     "node-a",
		runtime.LabelService:  "web",
	}
	if len(cfg.Labels) != len(want) {
		t.Errorf("labels %v; want %v", cfg.Labels, want)
	}
	for k, v := range want {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q; want %q", k, cfg.Labels[k], v)
		}
	}
	if len(cfg.Env) != 2 || cfg.Env[0] != "A=1" || cfg.Env[1] != "B=2" {
		t.Errorf("env %q; want [A=1 B=2]", cfg.Env)
	}
	if len(cfg.Cmd) != 2 || cfg.Cmd[0] != "/svc" || cfg.Image != "svc:1" {
		t.Errorf("image %s, cmd %q", cfg.Image, cfg.Cmd)
	}
	if cfg := r.config(runtime.Spec{ID: "x", Image: "svc:1"}); cfg.Cmd != nil {
		t.Errorf("cmd %q without Spec.Command; want the image's", cfg.Cmd)
	}
}

// The stats files are one-shot `GET /containers/<name>/stats` answers
// recorded from Docker 20.10 (API 1.41, cgroup v1) for a container of the
// test task spinning, and for the same container once stopped.
func TestCPUSecondsFromRecordedStats(t *testing.T) {
	for _, tc := range []struct {
		file string
		want float64
		ok   bool
	}{
		{"stats-running.json", 1.964009207, true},
		{"stats-exited.json", 0, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var st container.StatsResponse
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatalf("parse %s: %v", tc.file, err)
			}
			got, err := cpuSeconds("spinner", st)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("cpuSeconds = %v, %v; want %v (error: %v)", got, err, tc.want, !tc.ok)
			}
		})
	}
}
