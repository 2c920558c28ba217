package control_test

import (
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

var blueGreen = registry.Strategy{
	Type: registry.StrategyBlueGreen, MinHealthyTime: registry.Duration(2 * time.Second),
	HealthyDeadline: registry.Duration(10 * time.Second), RollbackWindow: registry.Duration(30 * time.Second),
}

// blueGreenRig runs svc at 3 instances of version 1 and starts a
// blue-green update to version 2.
func blueGreenRig(t *testing.T) *rig {
	t.Helper()
	r := newRig(t)
	if _, err := r.ctl.Scale(t.Context(), "svc", registry.ComputePhysarum, 3); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	if _, err := r.ctl.Update(t.Context(), "svc", newDefinition(), blueGreen); err != nil {
		t.Fatal(err)
	}
	return r
}

// untilSwitched passes, a second apart, until the rollout has switched,
// checking on the way that the old set serves alone and stays whole.
func (r *rig) untilSwitched(t *testing.T) registry.Rollout {
	t.Helper()
	for i := range 20 {
		r.pass(t)
		ro := r.rollout(t)
		by, _ := r.versions(t)
		if i == 0 && by[ro.To] != 3 {
			t.Fatalf("first pass: %v; want the whole new set starting at once", by)
		}
		if !ro.Switched.IsZero() {
			return ro
		}
		if rt := ro.Route(); by[1] != 3 || !rt.Serves(1) || rt.Serves(ro.To) || rt.Start == nil || rt.Start.Version != ro.From {
			t.Fatalf("step %d before the switch: %v, route %+v; want the 3 old ones alone serving", i, by, rt)
		}
		r.now = r.now.Add(time.Second)
	}
	t.Fatalf("no switch: %+v", r.rollout(t))
	return registry.Rollout{}
}

func TestBlueGreenSwitchesOnceTheNewSetIsHealthyAndStopsTheOldAfterTheWindow(t *testing.T) {
	r := blueGreenRig(t)
	ro := r.untilSwitched(t)
	if by, _ := r.versions(t); by[1] != 3 || by[2] != 3 {
		t.Fatalf("at the switch: %v; want both sets", by)
	}
	if rt := ro.Route(); !rt.Switched || rt.Serves(1) || !rt.Serves(2) || !rt.Serves(3) {
		t.Fatalf("route after the switch %+v: want version 2 and later alone", rt)
	}
	if _, err := r.ctl.Update(t.Context(), "svc", registry.ServiceInfo{CpuReq: 100, MemoryReq: 10, Exec: &registry.ExecConf{Command: "y"}}, blueGreen); wire.CodeOf(err) != wire.CodeConflict {
		t.Fatalf("an update inside the window: %v, want a conflict", err)
	}
	st, err := r.ctl.Status(t.Context(), "svc")
	if err != nil || st.Route == nil {
		t.Fatalf("status %+v %v: want the route", st, err)
	}
	standby := 0
	for _, in := range st.Instances {
		if in.Standby != (in.Version == 1) {
			t.Fatalf("status instance %+v: standby should say version 1", in)
		}
		if in.Standby {
			standby++
		}
	}
	if standby != 3 {
		t.Fatalf("%d instances on standby, want 3", standby)
	}
	// The old set idles through the window (no progress deadline).
	for range 3 {
		r.now = r.now.Add(9 * time.Second)
		r.pass(t)
		if by, _ := r.versions(t); by[1] != 3 || r.rollout(t).State != registry.RolloutRunning {
			t.Fatalf("inside the window: %v, %+v", by, r.rollout(t))
		}
	}
	r.now = r.now.Add(4 * time.Second)
	r.pass(t)
	r.pass(t)
	if by, _ := r.versions(t); by[1] != 0 || by[2] != 3 || r.rollout(t).State != registry.RolloutSucceeded {
		t.Fatalf("after the window: %v, %+v", by, r.rollout(t))
	}
}

func TestPromoteEndsTheWindowAtOnce(t *testing.T) {
	r := blueGreenRig(t)
	if _, err := r.ctl.Promote(t.Context(), "svc"); wire.CodeOf(err) != wire.CodeConflict || !strings.Contains(err.Error(), "not switched") {
		t.Fatalf("promote before the switch: %v, want a conflict saying why", err)
	}
	r.untilSwitched(t)
	ro, err := r.ctl.Promote(registry.WithCaller(t.Context(), "tester"), "svc")
	if err != nil || !ro.Promoted || !strings.Contains(ro.Message, "tester") {
		t.Fatalf("promote: %+v %v", ro, err)
	}
	r.pass(t)
	r.pass(t)
	if by, _ := r.versions(t); by[1] != 0 || by[2] != 3 || r.rollout(t).State != registry.RolloutSucceeded {
		t.Fatalf("after the promote: %v, %+v", by, r.rollout(t))
	}
	if _, err := r.ctl.Promote(t.Context(), "svc"); wire.CodeOf(err) != wire.CodeConflict {
		t.Fatalf("promote with no rollout running: %v, want a conflict", err)
	}
}

func TestRollbackInsideTheWindowSwitchesBackAtOnce(t *testing.T) {
	r := blueGreenRig(t)
	r.untilSwitched(t)
	back, err := r.ctl.Rollback(registry.WithCaller(t.Context(), "tester"), "svc")
	if err != nil {
		t.Fatal(err)
	}
	if back.RevertOf != 2 || back.To != 3 || back.Switched.IsZero() {
		t.Fatalf("rollback answered %+v: want a revert to version 3, switched", back)
	}
	// Switched back before any instance changed: the old set serves.
	if rt := back.Route(); !rt.Serves(1) || rt.Serves(2) || !rt.Serves(3) {
		t.Fatalf("route after the rollback %+v: want versions 1 and 3, not 2", rt)
	}
	if _, err := r.ctl.Rollback(t.Context(), "svc"); wire.CodeOf(err) != wire.CodeConflict {
		t.Fatalf("a second rollback: %v, want a conflict", err)
	}
	r.pass(t)
	r.pass(t)
	ro := r.rollout(t)
	if by, _ := r.versions(t); by[1] != 3 || by[2] != 0 || ro.State != registry.RolloutReverted {
		t.Fatalf("after the rollback: %v, %+v; want the 3 old ones, untouched", by, ro)
	}
	if info, err := r.ctl.GetService(t.Context(), "svc"); err != nil || info.Version != 3 || len(info.Exec.Args) != 0 {
		t.Fatalf("definition after the rollback: %+v %v", info, err)
	}
}

func TestABlueGreenRolloutWhoseNewSetFailsNeverSwitches(t *testing.T) {
	r := newRig(t)
	if _, err := r.ctl.Scale(t.Context(), "svc", registry.ComputePhysarum, 2); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	r.nodes.failVersion = 2
	// Even with auto_revert off: traffic never moved, so it goes back.
	off := false
	s := blueGreen
	s.AutoRevert = &off
	if _, err := r.ctl.Update(t.Context(), "svc", newDefinition(), s); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		r.pass(t)
		ro := r.rollout(t)
		if rt := ro.Route(); !rt.Serves(1) || (ro.RevertOf == 0 && !ro.Switched.IsZero()) {
			t.Fatalf("the old version stopped serving: %+v", ro)
		}
		if ro.State != registry.RolloutRunning {
			break
		}
		r.now = r.now.Add(time.Second)
	}
	ro := r.rollout(t)
	if ro.State != registry.RolloutReverted || ro.RevertOf != 2 || !strings.Contains(ro.Message, "2 of 2") {
		t.Fatalf("rollout %+v, want reverted", ro)
	}
	if by, _ := r.versions(t); by[1] != 2 || by[2] != 0 {
		t.Fatalf("instances after the revert: %v", by)
	}
}

func TestPromoteAndRollbackRefuseWhatTheyCannotDo(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		op   func() error
		code string
		says string
	}{
		{"promote, nothing running", func() error { _, err := r.ctl.Promote(ctx, "svc"); return err }, wire.CodeConflict, "no rollout"},
		{"rollback, nothing running", func() error { _, err := r.ctl.Rollback(ctx, "svc"); return err }, wire.CodeConflict, "no rollout"},
		{"rollback, unknown service", func() error { _, err := r.ctl.Rollback(ctx, "nope"); return err }, wire.CodeNotFound, "nope"},
		{"promote, bad name", func() error { _, err := r.ctl.Promote(ctx, "a b"); return err }, wire.CodeBadRequest, ""},
	} {
		if err := tc.op(); wire.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %s naming %q", tc.name, err, tc.code, tc.says)
		}
	}
	// A rolling rollout has no window to end, but may be rolled back.
	if _, err := r.ctl.Scale(ctx, "svc", registry.ComputePhysarum, 1); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	if _, err := r.ctl.Update(ctx, "svc", newDefinition(), fast); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctl.Promote(ctx, "svc"); wire.CodeOf(err) != wire.CodeConflict || !strings.Contains(err.Error(), "blue-green") {
		t.Fatalf("promote of a rolling rollout: %v", err)
	}
	back, err := r.ctl.Rollback(ctx, "svc")
	if err != nil || back.RevertOf != 2 || back.BlueGreen() {
		t.Fatalf("rollback of a rolling rollout: %+v %v", back, err)
	}
}

// TestARollbackKeepsAnOldSetOfAnEarlierNumber: the old set may run a
// definition registered again under a new number (an earlier revert's):
// every version of that definition counts as the old set, which a
// rollback keeps.
func TestARollbackKeepsAnOldSetOfAnEarlierNumber(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if _, err := r.ctl.Scale(ctx, "svc", registry.ComputePhysarum, 3); err != nil {
		t.Fatal(err)
	}
	r.pass(t)
	// A rolling update whose version 2 fails: reverted as version 3, and
	// the instances stay of version 1.
	r.nodes.failVersion = 2
	if _, err := r.ctl.Update(ctx, "svc", newDefinition(), fast); err != nil {
		t.Fatal(err)
	}
	r.passUntil(t, reverted, nil)
	if by, _ := r.versions(t); by[1] != 3 {
		t.Fatalf("after the revert: %v", by)
	}
	r.nodes.failVersion = 0
	if _, err := r.ctl.Update(ctx, "svc", newDefinition(), blueGreen); err != nil {
		t.Fatal(err)
	}
	r.untilSwitched(t)
	back, err := r.ctl.Rollback(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	if rt := back.Route(); !rt.Serves(1) || !rt.Serves(3) || rt.Serves(4) {
		t.Fatalf("route after the rollback %+v: want versions 1 and 3 (one definition), not 4", rt)
	}
	r.pass(t)
	r.pass(t)
	if by, _ := r.versions(t); by[1] != 3 || by[4] != 0 || r.rollout(t).State != registry.RolloutReverted {
		t.Fatalf("after the rollback: %v, %+v; want the 3 of version 1 kept", by, r.rollout(t))
	}
}
