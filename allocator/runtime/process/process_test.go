package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/allocator/runtime/process"
	"github.com/physarum-p2p/physarum/allocator/runtimetest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/p2ptest"
)

// envOwner makes the test binary an allocator that starts one instance
// and then waits to be killed (TestAdoptAfterOwnerKilled).
const (
	envOwnerDir  = "PHYSARUM_TEST_OWNER_DIR"
	envOwnerPort = "PHYSARUM_TEST_OWNER_PORT"
	ownedID      = "survivor"
)

func TestMain(m *testing.M) {
	if code, ok := runtimetest.RunTask(); ok {
		os.Exit(code)
	}
	if dir := os.Getenv(envOwnerDir); dir != "" {
		if err := runOwner(dir, os.Getenv(envOwnerPort)); err != nil {
			fmt.Fprintln(os.Stderr, "owner:", err)
			os.Exit(1)
		}
		select {} // until SIGKILLed
	}
	goleak.VerifyTestMain(m)
}

func runOwner(dir, port string) error {
	rt, err := process.New(process.Options{Dir: dir})
	if err != nil {
		return err
	}
	spec := taskSpec(map[string]string{runtimetest.EnvTask: runtimetest.ModeSleep, runtimetest.EnvPort: port})
	spec.ID = ownedID
	spec.MaxRestarts = 1
	_, err = rt.Start(context.Background(), spec)
	return err
}

// taskSpec runs this test binary as the test task. Under -race, a test
// binary that exits 0 sleeps a second first, for racing goroutines to
// report; GORACE turns that off.
func taskSpec(env map[string]string) runtime.Spec {
	exe, err := os.Executable()
	if err != nil {
		panic(err) // the test binary always has a path on Linux
	}
	env = maps.Clone(env)
	env["GORACE"] = "atexit_sleep_ms=0"
	return runtime.Spec{Command: []string{exe}, Env: env}
}

// harness gives each test its own state directory and fast backoff.
type harness struct {
	dirs sync.Map // *testing.T -> string
}

func (h *harness) dir(t *testing.T) string {
	t.Helper()
	if d, ok := h.dirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	h.dirs.Store(t, d)
	return d
}

func (h *harness) newRuntime(t *testing.T) runtime.Runtime {
	t.Helper()
	return newRuntime(t, h.dir(t))
}

func newRuntime(t *testing.T, dir string) *process.Runtime {
	t.Helper()
	rt, err := process.New(process.Options{
		Dir:               dir,
		Logger:            p2ptest.Logger(t),
		RestartBackoffMin: 10 * time.Millisecond,
		RestartBackoffMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("new process runtime: %v", err)
	}
	return rt
}

// cleanup removes everything rt lists and closes it when t ends.
func cleanup(t *testing.T, rt *process.Runtime) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if sts, err := rt.List(ctx); err == nil {
			for _, st := range sts {
				if err := rt.Remove(ctx, st.ID); err != nil {
					t.Errorf("cleanup: remove %s: %v", st.ID, err)
				}
			}
		}
		if err := rt.Close(); err != nil {
			t.Errorf("cleanup: close: %v", err)
		}
	})
}

func TestConformance(t *testing.T) { runConformance(t) }

// TestConformanceWithoutPidfd covers kernels before Linux 5.3, where
// processes are watched by polling /proc.
func TestConformanceWithoutPidfd(t *testing.T) {
	process.DisablePidfd(t)
	runConformance(t)
}

func runConformance(t *testing.T) {
	t.Helper()
	h := &harness{}
	runtimetest.Run(t, h.newRuntime, runtimetest.Workload{
		Spec: taskSpec,
		CheckApplied: func(t *testing.T, spec runtime.Spec, st runtime.Status) {
			t.Helper()
			rec := readState(t, filepath.Join(h.dir(t), spec.ID))
			if rec.Spec.CPU != spec.CPU || rec.Spec.Memory != spec.Memory || rec.Spec.MaxRestarts != spec.MaxRestarts {
				t.Errorf("state.json spec: cpu %d, memory %d, max restarts %d; want %d, %d, %d",
					rec.Spec.CPU, rec.Spec.Memory, rec.Spec.MaxRestarts, spec.CPU, spec.Memory, spec.MaxRestarts)
			}
			for k, v := range spec.Labels {
				if rec.Labels[k] != v {
					t.Errorf("state.json label %s = %q; want %q", k, rec.Labels[k], v)
				}
			}
			if want := "pid " + strconv.Itoa(rec.Pid); st.Ref != want || rec.StartTime == 0 {
				t.Errorf("state.json pid %d, start time %d; status ref %q", rec.Pid, rec.StartTime, st.Ref)
			}
		},
	})
}

// state is the part of state.json the tests look at.
type state struct {
	Spec      runtime.Spec      `json:"spec"`
	Labels    map[string]string `json:"labels"`
	Pid       int               `json:"pid"`
	StartTime uint64            `json:"start_time"`
}

func readState(t *testing.T, dir string) state {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("parse state.json: %v", err)
	}
	return s
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

func pidOf(t *testing.T, st runtime.Status) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimPrefix(st.Ref, "pid "))
	if err != nil {
		t.Fatalf("ref %q: %v", st.Ref, err)
	}
	return pid
}

func TestEnvIsSpecEnvPlusAStandardOneAndLogged(t *testing.T) {
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	cleanup(t, rt)
	path := os.Getenv("PATH")
	if path == "" {
		path = process.DefaultPath
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"standard", map[string]string{"ZETA": "last", "ALPHA": "a=b c"}, []string{
			"ALPHA=a=b c", "GORACE=atexit_sleep_ms=0", "HOME=" + filepath.Join(dir, "standard"), "LANG=C.UTF-8",
			"PATH=" + path, "PHYSARUM_TESTTASK=env", "ZETA=last"}},
		// The service's own values win over the standard ones.
		{"own", map[string]string{"PATH": "/opt/x/bin", "HOME": "/h", "LANG": "de_DE.UTF-8"}, []string{
			"GORACE=atexit_sleep_ms=0", "HOME=/h", "LANG=de_DE.UTF-8", "PATH=/opt/x/bin", "PHYSARUM_TESTTASK=env"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{runtimetest.EnvTask: runtimetest.ModeEnv}
			maps.Copy(env, tc.env)
			spec := taskSpec(env)
			spec.ID = tc.name
			if _, err := rt.Start(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			st, err := rt.Wait(t.Context(), spec.ID)
			if err != nil || st.ExitCode != 0 {
				t.Fatalf("wait: %+v, %v; want exit 0", st, err)
			}
			out, err := os.ReadFile(filepath.Join(dir, spec.ID, "stdout.log"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			got := lines[1:] // after the task's "pid N" line
			if !slices.Equal(got, tc.want) {
				t.Errorf("environment = %q; want exactly %q", got, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, spec.ID, "stderr.log")); err != nil {
				t.Errorf("stderr.log: %v", err)
			}
		})
	}
}

func TestStartRejectsBadCommands(t *testing.T) {
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	cleanup(t, rt)
	for _, cmd := range [][]string{nil, {"sleep", "10"}} {
		spec := runtime.Spec{ID: "bad", Command: cmd}
		if _, err := rt.Start(t.Context(), spec); !errors.Is(err, runtime.ErrInvalidSpec) {
			t.Errorf("Start with command %q: %v; want ErrInvalidSpec", cmd, err)
		}
	}
	spec := runtime.Spec{ID: "missing", Command: []string{"/nonexistent/physarum-test"}}
	if _, err := rt.Start(t.Context(), spec); err == nil || !strings.Contains(err.Error(), "/nonexistent/physarum-test") {
		t.Errorf("Start of a missing program: %v; want an error naming it", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed Start left its directory behind: %v", err)
	}
	if sts, err := rt.List(t.Context()); err != nil || len(sts) != 0 {
		t.Errorf("List = %v, %v; want nothing", sts, err)
	}
}

// TestProgramsThatExitAtOnce runs programs that may be gone before Start
// has looked at them.
func TestProgramsThatExitAtOnce(t *testing.T) {
	trueBin, err1 := exec.LookPath("true")
	falseBin, err2 := exec.LookPath("false")
	if err := errors.Join(err1, err2); err != nil {
		t.Skipf("no true and false programs: %v", err)
	}
	rt := newRuntime(t, t.TempDir())
	cleanup(t, rt)
	for _, tc := range []struct {
		bin            string
		restarts, code int
	}{
		{trueBin, 0, 0},
		{falseBin, 3, 1},
	} {
		spec := runtime.Spec{ID: filepath.Base(tc.bin), Command: []string{tc.bin}, MaxRestarts: 3}
		if _, err := rt.Start(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
		st, err := rt.Wait(t.Context(), spec.ID)
		if err != nil || st.Restarts != tc.restarts || st.ExitCode != tc.code {
			t.Errorf("%s: %+v, %v; want %d restarts, exit code %d", tc.bin, st, err, tc.restarts, tc.code)
		}
	}
}

func TestDirInUse(t *testing.T) {
	dir := t.TempDir()
	first := newRuntime(t, dir)
	if _, err := process.New(process.Options{Dir: dir}); !errors.Is(err, process.ErrDirInUse) {
		t.Fatalf("second runtime on %s: %v; want ErrDirInUse", dir, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	cleanup(t, newRuntime(t, dir)) // free again after Close
}

func TestStopKillsTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	cleanup(t, rt)
	spec := taskSpec(map[string]string{runtimetest.EnvTask: runtimetest.ModeFork})
	spec.ID = "group"
	if _, err := rt.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	child := childPid(t, filepath.Join(dir, spec.ID))
	if err := rt.Stop(t.Context(), spec.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		if running(child) {
			return fmt.Errorf("child %d of the stopped instance still runs", child)
		}
		return nil
	})
}

// childPid waits for the fork task in dir to report its child.
func childPid(t *testing.T, dir string) int {
	t.Helper()
	var pid int
	eventually.Succeeds(t, 10*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(dir, runtimetest.ChildPidFile))
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(string(b))
		return err
	})
	return pid
}

func TestLeaderDeathKillsTheGroupAndRestarts(t *testing.T) {
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	cleanup(t, rt)
	spec := taskSpec(map[string]string{runtimetest.EnvTask: runtimetest.ModeFork})
	spec.ID = "leader"
	spec.MaxRestarts = 1
	st, err := rt.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	child := childPid(t, filepath.Join(dir, spec.ID))
	if err := os.Remove(filepath.Join(dir, spec.ID, runtimetest.ChildPidFile)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pidOf(t, st), syscall.SIGKILL); err != nil { // the leader alone
		t.Fatal(err)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		got, err := rt.Inspect(t.Context(), spec.ID)
		if err != nil {
			return err
		}
		if got.State != runtime.StateRunning || got.Restarts != 1 || got.ExitCode != 137 || got.Ref == st.Ref {
			return fmt.Errorf("status %+v; want running again after 1 restart, exit code 137", got)
		}
		if running(child) {
			return fmt.Errorf("child %d of the dead leader still runs", child)
		}
		return nil
	})
	childPid(t, filepath.Join(dir, spec.ID)) // the new run forked again
}

func TestAdoptAfterOwnerKilled(t *testing.T) {
	dir := t.TempDir()
	port := freeport.T(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ownerLog, err := os.Create(filepath.Join(t.TempDir(), "owner.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer ownerLog.Close()
	owner := exec.Command(exe)
	owner.Env = append(os.Environ(), envOwnerDir+"="+dir, envOwnerPort+"="+strconv.Itoa(port))
	owner.Stdout, owner.Stderr = ownerLog, ownerLog
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = owner.Process.Kill()
			_ = owner.Wait()
		}
	})
	eventually.Succeeds(t, 20*time.Second, func() error {
		if owner.ProcessState != nil {
			return errors.New("owner exited")
		}
		return dialPort(port)
	})
	if err := owner.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = owner.Wait()
	exited = true

	// The instance outlived its owner, and the new runtime adopts it.
	rt := newRuntime(t, dir)
	cleanup(t, rt)
	st, err := rt.Inspect(t.Context(), ownedID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.StateRunning || st.Restarts != 0 {
		t.Fatalf("adopted %+v; want running, no restarts", st)
	}
	if err := dialPort(port); err != nil {
		t.Fatalf("adopted instance does not answer: %v", err)
	}

	// It is not this process's child, so its death is seen by polling and
	// its status is unknown; it is restarted all the same.
	if err := syscall.Kill(pidOf(t, st), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		got, err := rt.Inspect(t.Context(), ownedID)
		if err != nil {
			return err
		}
		if got.State != runtime.StateRunning || got.Restarts != 1 || got.ExitCode != -1 || got.Ref == st.Ref {
			return fmt.Errorf("status %+v; want running again after 1 restart, exit code -1", got)
		}
		return dialPort(port)
	})
	if err := rt.Stop(t.Context(), ownedID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func dialPort(port int) error {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func TestPidReuseIsNotAdopted(t *testing.T) {
	dir := t.TempDir()
	first := newRuntime(t, dir)
	spec := taskSpec(map[string]string{runtimetest.EnvTask: runtimetest.ModeSleep})
	spec.ID = "reused"
	st, err := first.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	pid := pidOf(t, st)
	t.Cleanup(func() { // the process is left to us: end it
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	})
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	// Make the state name a process that started at another time: what a
	// reused pid looks like.
	path := filepath.Join(dir, spec.ID, "state.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	raw["start_time"] = raw["start_time"].(float64) + 1
	if b, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	second := newRuntime(t, dir)
	cleanup(t, second)
	got, err := second.Inspect(t.Context(), spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != runtime.StateExited || got.ExitCode != -1 {
		t.Fatalf("instance with a reused pid: %+v; want exited, exit code -1", got)
	}
	if err := second.Stop(t.Context(), spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if !running(pid) {
		t.Fatalf("process %d, not the instance's, was signalled", pid)
	}
}

func TestLogsAreCapped(t *testing.T) {
	dir := t.TempDir()
	rt, err := process.New(process.Options{Dir: dir, Logger: p2ptest.Logger(t), LogMaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	process.SetLogCheckInterval(rt, 20*time.Millisecond)
	cleanup(t, rt)
	spec := taskSpec(map[string]string{runtimetest.EnvTask: runtimetest.ModeSpam, runtimetest.EnvBytes: "20000"})
	spec.ID = "spam"
	if _, err := rt.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, spec.ID, "stdout.log")
	eventually.Succeeds(t, 10*time.Second, func() error {
		rotated, err := os.Stat(log + ".1")
		if err != nil {
			return err
		}
		cur, err := os.Stat(log)
		if err != nil {
			return err
		}
		if rotated.Size() != 1000 || cur.Size() > 1000 {
			return fmt.Errorf("stdout.log %d bytes, stdout.log.1 %d; want at most 1000 and 1000", cur.Size(), rotated.Size())
		}
		return nil
	})
}

// TestStateIsPrivate: an instance's state holds its environment (the
// network's PSK, the proxy's key): nobody but the allocator's user may read
// it.
func TestStateIsPrivate(t *testing.T) {
	dir := t.TempDir()
	rt, err := process.New(process.Options{Dir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	spec := runtime.Spec{ID: "private", Command: []string{"/bin/true"}, Env: map[string]string{"P2P_PSK": "secret"}}
	if _, err := rt.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"state", "state/private", "state/private/state.json"} {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %o: readable by others", p, st.Mode().Perm())
		}
	}
}

// TestCPUSecondsCountsTheWholeGroup: an instance whose command (a shell)
// spins in a child it started reports the child's CPU time, growing as it
// spins; an unknown instance has none.
func TestCPUSecondsCountsTheWholeGroup(t *testing.T) {
	rt := newRuntime(t, t.TempDir())
	cleanup(t, rt)
	spec := taskSpec(map[string]string{runtimetest.EnvTask: runtimetest.ModeSpin})
	spec.Command = []string{"/bin/sh", "-c", `"$0" & wait`, spec.Command[0]}
	spec.ID = "spinner"
	if _, err := rt.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	var first float64
	eventually.Succeeds(t, 10*time.Second, func() error {
		var err error
		first, err = rt.CPUSeconds(t.Context(), spec.ID)
		if err == nil && first <= 0 {
			err = errors.New("no CPU time yet")
		}
		return err
	})
	eventually.Succeeds(t, 20*time.Second, func() error {
		s, err := rt.CPUSeconds(t.Context(), spec.ID)
		if err == nil && s < first+0.3 {
			err = fmt.Errorf("%.2f s of CPU, from %.2f", s, first)
		}
		return err
	})
	if _, err := rt.CPUSeconds(t.Context(), "nobody"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("unknown instance: %v, want ErrNotFound", err)
	}
}
