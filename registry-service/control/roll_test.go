package control_test

import (
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// versions counts the live (pending, starting, running) pinned instances
// of svc by version, and the running ones.
func (r *rig) versions(t *testing.T) (byVersion map[int]int, running int) {
	t.Helper()
	byVersion = map[int]int{}
	for _, in := range r.pinned(t) {
		switch in.State {
		case registry.StateRunning:
			running++
			byVersion[in.Version]++
		case registry.StatePending, registry.StateStarting:
			byVersion[in.Version]++
		}
	}
	return byVersion, running
}

func (r *rig) rollout(t *testing.T) registry.Rollout {
	t.Helper()
	ros, err := r.ctl.Rollouts(t.Context(), "svc")
	if err != nil || len(ros) != 1 {
		t.Fatalf("rollouts: %+v %v", ros, err)
	}
	return ros[0]
}

// passUntil runs passes a second apart, each followed by check (when
// given), until done accepts the rollout; it fails the test after 20.
func (r *rig) passUntil(t *testing.T, done func(registry.Rollout) bool, check func(step int)) registry.Rollout {
	t.Helper()
	for i := range 20 {
		r.pass(t)
		if check != nil {
			check(i)
		}
		if ro := r.rollout(t); done(ro) {
			return ro
		}
		r.now = r.now.Add(time.Second)
	}
	t.Fatalf("rollout %+v after 20 passes", r.rollout(t))
	return registry.Rollout{}
}

// reverted accepts a revert that ended.
func reverted(ro registry.Rollout) bool {
	return ro.RevertOf != 0 && ro.State != registry.RolloutRunning
}

var fast = registry.Strategy{MinHealthyTime: registry.Duration(2 * time.Second), HealthyDeadline: registry.Duration(10 * time.Second)}

func newDefinition() registry.ServiceInfo {
	return registry.ServiceInfo{CpuReq: 100, MemoryReq: 10, Exec: &registry.ExecConf{Command: "x", Args: []string{"-v2"}}}
}

func TestRollingUpdateReplacesEveryInstanceKeepingTheCount(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if _, err := r.ctl.Scale(ctx, "svc", registry.ComputePhysarum, 3); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	if by, running := r.versions(t); by[1] != 3 || running != 3 {
		t.Fatalf("before: %v, %d running", by, running)
	}
	ro, err := r.ctl.Update(ctx, "svc", newDefinition(), fast)
	if err != nil {
		t.Fatal(err)
	}
	if ro.From != 1 || ro.To != 2 || ro.State != registry.RolloutRunning {
		t.Fatalf("rollout %+v", ro)
	}
	// A second update while it runs is refused, and changes nothing.
	if _, err := r.ctl.Update(ctx, "svc", registry.ServiceInfo{CpuReq: 100, MemoryReq: 12, Exec: &registry.ExecConf{Command: "x"}}, fast); wire.CodeOf(err) != wire.CodeConflict {
		t.Fatalf("second update: %v, want a conflict", err)
	}
	for i := range 30 {
		r.pass(t)
		by, running := r.versions(t)
		if running < 3 {
			t.Fatalf("step %d: %d running, fewer than the count: %v", i, running, by)
		}
		if by[1]+by[2] > 4 {
			t.Fatalf("step %d: %v: more than one beyond the count (max_parallel 1)", i, by)
		}
		if r.rollout(t).State != registry.RolloutRunning {
			break
		}
		r.now = r.now.Add(time.Second)
	}
	ro = r.rollout(t)
	if by, _ := r.versions(t); ro.State != registry.RolloutSucceeded || by[2] != 3 || by[1] != 0 {
		t.Fatalf("after: %v, rollout %+v", by, ro)
	}
}

func TestARolloutWhoseInstancesFailIsReverted(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if _, err := r.ctl.Scale(ctx, "svc", registry.ComputePhysarum, 2); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	r.nodes.failVersion = 2
	if _, err := r.ctl.Update(ctx, "svc", newDefinition(), fast); err != nil {
		t.Fatal(err)
	}
	ro := r.passUntil(t, reverted, func(int) {
		if by, running := r.versions(t); running < 2 || by[1] < 2 {
			t.Fatalf("the old version stopped serving: %v, %d running", by, running)
		}
	})
	if ro.State != registry.RolloutReverted || ro.RevertOf != 2 || ro.To != 3 || !strings.Contains(ro.Message, "2 of 2") {
		t.Fatalf("rollout %+v, want reverted to version 3 (the first definition again)", ro)
	}
	info, err := r.ctl.GetService(ctx, "svc")
	if err != nil || info.Version != 3 || len(info.Exec.Args) != 0 {
		t.Fatalf("definition after the revert: %+v %v", info, err)
	}
	if by, _ := r.versions(t); by[1] != 2 || by[2] != 0 {
		t.Fatalf("instances after the revert: %v; want the 2 old ones, untouched", by)
	}
}

func TestUpdateRefusesBadInput(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name, service string
		info          registry.ServiceInfo
		s             registry.Strategy
		code, says    string
	}{
		{"unknown service", "nope", newDefinition(), registry.Strategy{}, wire.CodeNotFound, "nope"},
		{"unchanged", "svc", registry.ServiceInfo{CpuReq: 100, MemoryReq: 10, Exec: &registry.ExecConf{Command: "x"}}, registry.Strategy{}, wire.CodeBadRequest, "unchanged"},
		{"unknown strategy", "svc", newDefinition(), registry.Strategy{Type: "canary"}, wire.CodeBadRequest, "strategy.type"},
		{"window of a rolling update", "svc", newDefinition(), registry.Strategy{RollbackWindow: registry.Duration(time.Minute)}, wire.CodeBadRequest, "rollback_window"},
		{"negative parallel", "svc", newDefinition(), registry.Strategy{MaxParallel: -1}, wire.CodeBadRequest, "max_parallel"},
		{"bad definition", "svc", registry.ServiceInfo{CpuReq: -1}, registry.Strategy{}, wire.CodeBadRequest, ""},
	} {
		_, err := r.ctl.Update(ctx, tc.service, tc.info, tc.s)
		if wire.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %s naming %q", tc.name, err, tc.code, tc.says)
		}
	}
	if info, _ := r.ctl.GetService(ctx, "svc"); info.Version != 1 {
		t.Fatalf("a refused update registered version %d", info.Version)
	}
	if ros, _ := r.ctl.Rollouts(ctx, ""); len(ros) != 0 {
		t.Fatalf("a refused update left rollouts: %+v", ros)
	}
}
