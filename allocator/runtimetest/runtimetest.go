// Package runtimetest is the conformance suite of the allocator's runtimes:
// Run drives a runtime.Runtime through the interface alone and checks the
// contract written on it, so that the Docker and the process runtime
// behave alike. The workload is the test task (RunTask), which the process
// runtime's tests run by re-executing their own test binary and the Docker
// runtime's tests from a FROM scratch image holding the static
// runtimetest/testtask binary.
//
// Set PHYSARUM_TEST_VERBOSE=1 to see the runtimes' logs in the test output.
package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
)

// Workload tells the suite how the runtime under test runs the test task.
type Workload struct {
	// Spec returns a spec that runs the test task with env as its whole
	// environment. The suite sets ID, Labels, CPU, Memory and MaxRestarts.
	Spec func(env map[string]string) runtime.Spec
	// CheckApplied, when set, checks in the runtime's own terms (the Docker
	// API, the state file) that spec's limits, labels and restart policy
	// were recorded for the instance started from it, st.
	CheckApplied func(t *testing.T, spec runtime.Spec, st runtime.Status)
}

// Timeouts of the suite: generous, since they only bound failures.
const (
	waitTimeout    = 30 * time.Second
	cleanupTimeout = 30 * time.Second
)

// Run runs the conformance suite as parallel subtests of t. newRuntime
// returns a new runtime on the state of the test it is given: called twice
// within one test, it must return runtimes sharing their state (state
// directory, or Docker daemon and node), as a restarted allocator would;
// different tests must get separate state. The suite removes the instances
// it starts and closes the runtimes it gets.
func Run(t *testing.T, newRuntime func(t *testing.T) runtime.Runtime, workload Workload) {
	t.Helper()
	s := &suite{newRuntime: newRuntime, w: workload}
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"StartInspectList", s.startInspectList},
		{"HTTPWorkloadAnswers", s.httpAnswers},
		{"DuplicateID", s.duplicateID},
		{"InvalidSpec", s.invalidSpec},
		{"CrashIsRestartedAndCounted", s.crashRestarted},
		{"CrashLoopEndsAfterMaxRestarts", s.crashExhausted},
		{"NoRestartsAllowed", s.noRestarts},
		{"CleanExitIsNotRestarted", s.cleanExit},
		{"StopGraceful", s.stopGraceful},
		{"StopKillsWhatIgnoresSIGTERM", s.stopIgnoringTerm},
		{"StopCrashLoop", s.stopCrashLoop},
		{"Remove", s.remove},
		{"Adopt", s.adopt},
		{"LimitsAndLabels", s.limitsAndLabels},
		{"WaitReturnsWithContext", s.waitContext},
		{"CloseEndsWait", s.closeEndsWait},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

type suite struct {
	newRuntime func(t *testing.T) runtime.Runtime
	w          Workload
}

// runtime returns a runtime on t's state, removing what it lists and
// closing it when t ends.
func (s *suite) runtime(t *testing.T) runtime.Runtime {
	t.Helper()
	rt := s.newRuntime(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if sts, err := rt.List(ctx); err == nil {
			for _, st := range sts {
				if err := rt.Remove(ctx, st.ID); err != nil {
					t.Errorf("cleanup: remove %s: %v", st.ID, err)
				}
			}
		}
		if err := rt.Close(); err != nil {
			t.Errorf("cleanup: close %s runtime: %v", rt.Name(), err)
		}
	})
	return rt
}

// spec returns a spec with a fresh ID running the task in mode.
func (s *suite) spec(mode string, env map[string]string) runtime.Spec {
	e := map[string]string{EnvTask: mode}
	maps.Copy(e, env)
	spec := s.w.Spec(e)
	spec.ID = fmt.Sprintf("rt-%08x", rand.Uint32())
	return spec
}

func start(t *testing.T, rt runtime.Runtime, spec runtime.Spec) runtime.Status {
	t.Helper()
	st, err := rt.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("start %s: %v", spec.ID, err)
	}
	return st
}

func inspect(t *testing.T, rt runtime.Runtime, id string) runtime.Status {
	t.Helper()
	st, err := rt.Inspect(t.Context(), id)
	if err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return st
}

func wait(t *testing.T, rt runtime.Runtime, id string) runtime.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	st, err := rt.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait for %s: %v", id, err)
	}
	return st
}

func stop(t *testing.T, rt runtime.Runtime, id string, timeout time.Duration) {
	t.Helper()
	if err := rt.Stop(t.Context(), id, timeout); err != nil {
		t.Fatalf("stop %s: %v", id, err)
	}
}

// wantState fails t unless st has the state, restarts and (when code is
// not nil) exit code given.
func wantState(t *testing.T, st runtime.Status, state runtime.State, restarts int, code *int) {
	t.Helper()
	if st.State != state || st.Restarts != restarts || (code != nil && st.ExitCode != *code) {
		want := fmt.Sprintf("state %s, %d restarts", state, restarts)
		if code != nil {
			want += ", exit code " + strconv.Itoa(*code)
		}
		t.Fatalf("instance %s: state %s, %d restarts, exit code %d; want %s", st.ID, st.State, st.Restarts, st.ExitCode, want)
	}
}

func exitCode(c int) *int { return &c }

func (s *suite) startInspectList(t *testing.T) {
	rt := s.runtime(t)
	spec := s.spec(ModeSleep, nil)
	spec.Labels = map[string]string{runtime.LabelService: "svc-a", "test.label": "x"}
	before := time.Now()
	st := start(t, rt, spec)
	if st.ID != spec.ID || st.State != runtime.StateRunning || st.Ref == "" {
		t.Fatalf("Start returned %+v; want ID %s, state running, a ref", st, spec.ID)
	}
	got := inspect(t, rt, spec.ID)
	wantState(t, got, runtime.StateRunning, 0, nil)
	if got.Ref != st.Ref {
		t.Errorf("Inspect ref %q, Start ref %q", got.Ref, st.Ref)
	}
	if got.StartedAt.Before(before.Add(-5*time.Second)) || got.StartedAt.After(time.Now().Add(5*time.Second)) {
		t.Errorf("StartedAt %s; want about %s", got.StartedAt, before)
	}
	wantLabels(t, got, spec)

	sts, err := rt.List(t.Context())
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(sts) != 1 || sts[0].ID != spec.ID || sts[0].State != runtime.StateRunning {
		t.Fatalf("List = %+v; want just %s, running", sts, spec.ID)
	}
	wantLabels(t, sts[0], spec)

	if _, err := rt.Inspect(t.Context(), "rt-not-there"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect of an unknown ID: %v; want ErrNotFound", err)
	}
}

// wantLabels checks that st carries spec's labels and the runtime's own.
func wantLabels(t *testing.T, st runtime.Status, spec runtime.Spec) {
	t.Helper()
	want := maps.Clone(spec.Labels)
	if want == nil {
		want = map[string]string{}
	}
	want[runtime.LabelManaged] = "true"
	want[runtime.LabelInstance] = spec.ID
	for k, v := range want {
		if st.Labels[k] != v {
			t.Errorf("label %s = %q; want %q (labels %v)", k, st.Labels[k], v, st.Labels)
		}
	}
}

func (s *suite) httpAnswers(t *testing.T) {
	rt := s.runtime(t)
	port := freeport.T(t)
	reply := "hello " + strconv.Itoa(port)
	spec := s.spec(ModeHTTP, map[string]string{EnvPort: strconv.Itoa(port), EnvReply: reply})
	start(t, rt, spec)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	eventually.Succeeds(t, waitTimeout, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if string(body) != reply {
			return fmt.Errorf("GET %s: %q; want %q", url, body, reply)
		}
		return nil
	})
}

func (s *suite) duplicateID(t *testing.T) {
	rt := s.runtime(t)
	spec := s.spec(ModeSleep, nil)
	start(t, rt, spec)
	if _, err := rt.Start(t.Context(), spec); !errors.Is(err, runtime.ErrExists) {
		t.Fatalf("second Start of a running %s: %v; want ErrExists", spec.ID, err)
	}
	stop(t, rt, spec.ID, 10*time.Second)
	if _, err := rt.Start(t.Context(), spec); !errors.Is(err, runtime.ErrExists) {
		t.Fatalf("Start of a stopped %s: %v; want ErrExists", spec.ID, err)
	}
	if err := rt.Remove(t.Context(), spec.ID); err != nil {
		t.Fatalf("remove: %v", err)
	}
	st := start(t, rt, spec) // the ID is free again
	wantState(t, st, runtime.StateRunning, 0, nil)
}

func (s *suite) invalidSpec(t *testing.T) {
	rt := s.runtime(t)
	for _, id := range []string{"", "Upper", "under_score", "a.b", strings.Repeat("a", 64)} {
		spec := s.spec(ModeSleep, nil)
		spec.ID = id
		if _, err := rt.Start(t.Context(), spec); !errors.Is(err, runtime.ErrInvalidSpec) {
			t.Errorf("Start with ID %q: %v; want ErrInvalidSpec", id, err)
		}
	}
	spec := s.spec(ModeSleep, nil)
	spec.Memory = -1
	if _, err := rt.Start(t.Context(), spec); !errors.Is(err, runtime.ErrInvalidSpec) {
		t.Errorf("Start with negative memory: %v; want ErrInvalidSpec", err)
	}
	if sts, err := rt.List(t.Context()); err != nil || len(sts) != 0 {
		t.Errorf("List after invalid starts = %v, %v; want nothing", sts, err)
	}
}

func (s *suite) crashRestarted(t *testing.T) {
	rt := s.runtime(t)
	port := freeport.T(t)
	spec := s.spec(ModeCrash, map[string]string{EnvCrashes: "2", EnvPort: strconv.Itoa(port)})
	spec.MaxRestarts = 5
	start(t, rt, spec)
	eventually.Succeeds(t, waitTimeout, func() error {
		st, err := rt.Inspect(t.Context(), spec.ID)
		if err != nil {
			return err
		}
		if st.State != runtime.StateRunning || st.Restarts != 2 {
			return fmt.Errorf("state %s, %d restarts; want running after 2", st.State, st.Restarts)
		}
		return dial(port)
	})
}

func (s *suite) crashExhausted(t *testing.T) {
	rt := s.runtime(t)
	spec := s.spec(ModeExit, map[string]string{EnvCode: "3"})
	spec.MaxRestarts = 2
	start(t, rt, spec)
	wantState(t, wait(t, rt, spec.ID), runtime.StateExited, 2, exitCode(3))
	wantState(t, inspect(t, rt, spec.ID), runtime.StateExited, 2, exitCode(3))
}

func (s *suite) noRestarts(t *testing.T) {
	rt := s.runtime(t)
	spec := s.spec(ModeExit, map[string]string{EnvCode: "3"})
	spec.MaxRestarts = 0
	start(t, rt, spec)
	wantState(t, wait(t, rt, spec.ID), runtime.StateExited, 0, exitCode(3))
}

func (s *suite) cleanExit(t *testing.T) {
	rt := s.runtime(t)
	spec := s.spec(ModeExit, map[string]string{EnvCode: "0"})
	spec.MaxRestarts = 3
	start(t, rt, spec)
	wantState(t, wait(t, rt, spec.ID), runtime.StateExited, 0, exitCode(0))
}

func (s *suite) stopGraceful(t *testing.T) {
	rt := s.runtime(t)
	port := freeport.T(t)
	spec := s.spec(ModeSleep, map[string]string{EnvPort: strconv.Itoa(port)})
	spec.MaxRestarts = 3
	start(t, rt, spec)
	eventually.Succeeds(t, waitTimeout, func() error { return dial(port) }) // handles SIGTERM now
	stop(t, rt, spec.ID, 20*time.Second)
	wantState(t, inspect(t, rt, spec.ID), runtime.StateExited, 0, exitCode(0))
	stop(t, rt, spec.ID, 20*time.Second) // stopping an exited instance is fine
	wantState(t, wait(t, rt, spec.ID), runtime.StateExited, 0, exitCode(0))
}

func (s *suite) stopIgnoringTerm(t *testing.T) {
	rt := s.runtime(t)
	port := freeport.T(t)
	spec := s.spec(ModeIgnoreTerm, map[string]string{EnvPort: strconv.Itoa(port)})
	spec.MaxRestarts = 3
	start(t, rt, spec)
	eventually.Succeeds(t, waitTimeout, func() error { return dial(port) }) // ignores SIGTERM now
	const timeout = 500 * time.Millisecond
	began := time.Now()
	stop(t, rt, spec.ID, timeout)
	if took := time.Since(began); took < timeout || took > waitTimeout {
		t.Errorf("Stop took %s; want the %s grace period, then SIGKILL", took, timeout)
	}
	// Killed by SIGKILL (128+9), and not restarted despite MaxRestarts.
	wantState(t, inspect(t, rt, spec.ID), runtime.StateExited, 0, exitCode(137))
	wantState(t, wait(t, rt, spec.ID), runtime.StateExited, 0, exitCode(137))
}

func (s *suite) stopCrashLoop(t *testing.T) {
	rt := s.runtime(t)
	spec := s.spec(ModeExit, map[string]string{EnvCode: "3"})
	spec.MaxRestarts = 1000
	start(t, rt, spec)
	eventually.Succeeds(t, waitTimeout, func() error {
		st, err := rt.Inspect(t.Context(), spec.ID)
		if err == nil && st.Restarts < 2 {
			err = fmt.Errorf("%d restarts; want 2 or more", st.Restarts)
		}
		return err
	})
	stop(t, rt, spec.ID, 5*time.Second)
	st := wait(t, rt, spec.ID)
	if st.State != runtime.StateExited {
		t.Fatalf("after Stop: state %s; want exited", st.State)
	}
}

func (s *suite) remove(t *testing.T) {
	rt := s.runtime(t)
	spec := s.spec(ModeSleep, nil)
	start(t, rt, spec)
	stop(t, rt, spec.ID, 10*time.Second)
	if err := rt.Remove(t.Context(), spec.ID); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := rt.Inspect(t.Context(), spec.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect after Remove: %v; want ErrNotFound", err)
	}
	if _, err := rt.Wait(t.Context(), spec.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Wait after Remove: %v; want ErrNotFound", err)
	}
	if err := rt.Stop(t.Context(), spec.ID, time.Second); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Stop after Remove: %v; want ErrNotFound", err)
	}
	if err := rt.Remove(t.Context(), spec.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("second Remove: %v; want ErrNotFound", err)
	}

	// Remove kills an instance that still runs.
	port := freeport.T(t)
	running := s.spec(ModeIgnoreTerm, map[string]string{EnvPort: strconv.Itoa(port)})
	start(t, rt, running)
	eventually.Succeeds(t, waitTimeout, func() error { return dial(port) })
	if err := rt.Remove(t.Context(), running.ID); err != nil {
		t.Fatalf("remove a running instance: %v", err)
	}
	if _, err := rt.Inspect(t.Context(), running.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect after Remove: %v; want ErrNotFound", err)
	}
	eventually.Succeeds(t, waitTimeout, func() error {
		if dial(port) == nil {
			return fmt.Errorf("port %d still answers after Remove", port)
		}
		return nil
	})
	if sts, err := rt.List(t.Context()); err != nil || len(sts) != 0 {
		t.Errorf("List after Remove = %v, %v; want nothing", sts, err)
	}
}

func (s *suite) adopt(t *testing.T) {
	first := s.runtime(t)
	port := freeport.T(t)
	live := s.spec(ModeSleep, map[string]string{EnvPort: strconv.Itoa(port)})
	live.Labels = map[string]string{runtime.LabelService: "svc-adopted"}
	live.MaxRestarts = 2
	liveSt := start(t, first, live)
	eventually.Succeeds(t, waitTimeout, func() error { return dial(port) })
	dead := s.spec(ModeExit, map[string]string{EnvCode: "3"})
	start(t, first, dead)
	wait(t, first, dead.ID)

	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := first.Inspect(t.Context(), live.ID); !errors.Is(err, runtime.ErrClosed) {
		t.Errorf("Inspect after Close: %v; want ErrClosed", err)
	}
	if err := dial(port); err != nil {
		t.Fatalf("instance did not survive Close: %v", err)
	}

	second := s.runtime(t)
	sts, err := second.List(t.Context())
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	found := map[string]runtime.Status{}
	for _, st := range sts {
		found[st.ID] = st
	}
	if len(found) != 2 {
		t.Fatalf("List after adoption = %+v; want %s and %s", sts, live.ID, dead.ID)
	}
	wantState(t, found[live.ID], runtime.StateRunning, 0, nil)
	if found[live.ID].Ref != liveSt.Ref {
		t.Errorf("adopted ref %q; want the original %q", found[live.ID].Ref, liveSt.Ref)
	}
	wantLabels(t, found[live.ID], live)
	wantState(t, found[dead.ID], runtime.StateExited, 0, exitCode(3))

	stop(t, second, live.ID, 10*time.Second)
	wantState(t, inspect(t, second, live.ID), runtime.StateExited, 0, nil)
	eventually.Succeeds(t, waitTimeout, func() error {
		if dial(port) == nil {
			return fmt.Errorf("port %d still answers after Stop", port)
		}
		return nil
	})
}

func (s *suite) limitsAndLabels(t *testing.T) {
	rt := s.runtime(t)
	spec := s.spec(ModeSleep, nil)
	spec.CPU = 250
	spec.Memory = 64
	spec.MaxRestarts = 3
	spec.Labels = map[string]string{runtime.LabelService: "svc-limits", "test.label": "y"}
	st := start(t, rt, spec)
	wantLabels(t, inspect(t, rt, spec.ID), spec)
	if s.w.CheckApplied != nil {
		s.w.CheckApplied(t, spec, st)
	}
}

func (s *suite) waitContext(t *testing.T) {
	rt := s.runtime(t)
	spec := s.spec(ModeSleep, nil)
	start(t, rt, spec)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := rt.Wait(ctx, spec.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past its deadline: %v; want context.DeadlineExceeded", err)
	}
}

func (s *suite) closeEndsWait(t *testing.T) {
	first := s.runtime(t)
	spec := s.spec(ModeSleep, nil)
	start(t, first, spec)
	errc := make(chan error, 1)
	go func() {
		_, err := first.Wait(t.Context(), spec.ID)
		errc <- err
	}()
	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-errc; !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("Wait across Close: %v; want ErrClosed", err)
	}
	s.runtime(t) // adopts the instance, and removes it when the test ends
}

func dial(port int) error {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}
