// Package process is the runtime for machines without Docker. It runs each
// instance's Spec.Command as a child process leading its own process
// group, restarts it with exponential backoff when it exits with an error,
// and keeps enough on disk that a runtime started later (after the
// allocator restarted, or was killed) adopts the processes its
// predecessor left running.
//
// Each instance has a directory under Options.Dir, which is also the
// process's working directory:
//
//	<Dir>/<id>/state.json   spec, labels, pid and start time, restarts, state
//	<Dir>/<id>/stdout.log   the process's stdout, appended to across restarts
//	<Dir>/<id>/stderr.log   likewise stderr; both capped at Options.LogMaxBytes
//
// The process gets Spec.Env as its environment plus, where Spec.Env does
// not set them, a minimal standard one: PATH (the allocator's, or
// DefaultPath), HOME (the instance's directory) and LANG (C.UTF-8).
// Nothing else of the allocator's environment reaches it, and
// Spec.Command[0] must be an absolute path. It has no parent-death
// signal, so it outlives the allocator. The instance is the whole process
// group: when the leader exits, whatever is left of the group
// is killed before any restart.
//
// A runtime holds a lock on Options.Dir; a second one on the same
// directory fails with ErrDirInUse until the first is closed or its
// process dies.
//
// Limits: Spec.CPU and Spec.Memory are recorded in state.json but not
// enforced. Enforcing them takes cgroups, which this runtime does not
// manage; a node that must enforce limits runs the Docker runtime.
//
// The runtime needs Linux: /proc, process groups, and pidfds (Linux 5.3 or
// later; on older kernels it polls /proc instead).
package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/common/backoff"
)

// Name is what Runtime.Name returns.
const Name = "process"

// Defaults for Options.
const (
	DefaultRestartBackoffMin = 100 * time.Millisecond
	DefaultRestartBackoffMax = 10 * time.Second
	DefaultLogMaxBytes       = 10 << 20
)

const (
	// backoffResetAfter is how long a run must last for the next restart
	// to start from RestartBackoffMin again (Docker's rule too).
	backoffResetAfter = 10 * time.Second
	// logCheckInterval is how often the logs of a running process are
	// checked against LogMaxBytes (they are also checked at each start).
	logCheckInterval = 30 * time.Second
	lockFile         = ".lock"
)

// Options configure a Runtime.
type Options struct {
	// Dir is the state root, required. It is created if missing.
	Dir string
	// Logger receives the runtime's logs. Default: discard.
	Logger *slog.Logger
	// RestartBackoffMin is the delay before the first restart after a
	// crash; each further restart doubles it, up to RestartBackoffMax. A
	// run that lasted 10s or more resets it. Defaults:
	// DefaultRestartBackoffMin and DefaultRestartBackoffMax.
	RestartBackoffMin time.Duration
	RestartBackoffMax time.Duration
	// LogMaxBytes caps each of stdout.log and stderr.log: past it, the last
	// LogMaxBytes move to <name>.1 (replacing the previous one) and the log
	// starts again empty. It is checked at each start and every 30s.
	// Default: DefaultLogMaxBytes.
	LogMaxBytes int64
}

// Runtime is the process runtime. Create it with New.
type Runtime struct {
	dir        string
	log        *slog.Logger
	backoffMin time.Duration
	backoffMax time.Duration
	logMax     int64
	logEvery   time.Duration // logCheckInterval; tests shorten it
	lock       *os.File      // holds the flock on dir

	closing chan struct{} // closed by Close
	wg      sync.WaitGroup

	mu     sync.Mutex
	insts  map[string]*instance
	closed bool
}

var (
	_ runtime.Runtime   = (*Runtime)(nil)
	_ runtime.LogTailer = (*Runtime)(nil)
)

// New opens the state directory and adopts the instances found in it:
// those whose process still runs are supervised again, those whose
// process died meanwhile are restarted or marked exited by the usual
// policy (their exit code is unknown: -1). It fails with ErrDirInUse if
// another runtime holds the directory.
func New(opts Options) (*Runtime, error) {
	if opts.Dir == "" {
		return nil, errors.New("process runtime: no state directory")
	}
	r := &Runtime{
		dir:        opts.Dir,
		log:        opts.Logger,
		backoffMin: opts.RestartBackoffMin,
		backoffMax: opts.RestartBackoffMax,
		logMax:     opts.LogMaxBytes,
		logEvery:   logCheckInterval,
		closing:    make(chan struct{}),
		insts:      map[string]*instance{},
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("component", "runtime", "runtime", Name)
	if r.backoffMin <= 0 {
		r.backoffMin = DefaultRestartBackoffMin
	}
	if r.backoffMax <= 0 {
		r.backoffMax = DefaultRestartBackoffMax
	}
	r.backoffMax = max(r.backoffMax, r.backoffMin)
	if r.logMax <= 0 {
		r.logMax = DefaultLogMaxBytes
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, fmt.Errorf("process runtime: create state directory: %w", err)
	}
	// A directory made by an older version may be open to others; what
	// it holds (instances' environments) is not for them.
	if err := os.Chmod(r.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(r.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock state directory: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock state directory %s: %w", r.dir, ErrDirInUse)
		}
		return nil, fmt.Errorf("lock state directory %s: %w", r.dir, err)
	}
	r.lock = lock
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("read state directory: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			r.adopt(e.Name())
		}
	}
	return r, nil
}

// adopt loads the instance in directory name and, unless it is down for
// good, supervises it again. A directory without a readable state is
// skipped with a warning.
func (r *Runtime) adopt(name string) {
	dir := filepath.Join(r.dir, name)
	rec, err := readRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil && rec.Spec.ID != name {
		err = fmt.Errorf("state names instance %q", rec.Spec.ID)
	}
	if err != nil {
		r.log.Warn("skip instance directory", "dir", dir, "err", err)
		return
	}
	inst := newInstance(dir, rec, r.log)
	r.insts[name] = inst
	if rec.State == runtime.StateExited {
		return
	}
	pending := rec.Pending
	var p *proc
	if !pending {
		p, err = newProc(rec.Pid, rec.StartTime, nil)
		if err != nil {
			// It died while no one watched: the usual policy applies,
			// now, so that List right after New tells the truth.
			inst.log.Info("adopted instance is not running", "pid", rec.Pid, "err", err)
			if !r.restartDue(inst, nil, exitUnknown) {
				return
			}
			pending = true
		} else {
			inst.proc = p
			inst.log.Info("adopted instance", "pid", rec.Pid)
		}
	}
	r.wg.Add(1)
	go r.supervise(inst, p, pending)
}

// Name returns "process".
func (r *Runtime) Name() string { return Name }

// Start validates spec, creates the instance directory and starts the
// process. It fails with runtime.ErrInvalidSpec if Command is empty or
// its first element is not an absolute path.
func (r *Runtime) Start(ctx context.Context, spec runtime.Spec) (runtime.Status, error) {
	if err := ctx.Err(); err != nil {
		return runtime.Status{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	if err := validate(spec); err != nil {
		return runtime.Status{}, fmt.Errorf("start: %w", err)
	}
	spec.Command = slices.Clone(spec.Command)
	spec.Env = maps.Clone(spec.Env)
	spec.Labels = maps.Clone(spec.Labels)
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[runtime.LabelManaged] = "true"
	labels[runtime.LabelInstance] = spec.ID

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return runtime.Status{}, fmt.Errorf("start %s: %w", spec.ID, runtime.ErrClosed)
	}
	if _, ok := r.insts[spec.ID]; ok {
		return runtime.Status{}, fmt.Errorf("start %s: %w", spec.ID, runtime.ErrExists)
	}
	dir := filepath.Join(r.dir, spec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return runtime.Status{}, fmt.Errorf("start %s: directory %s: %w", spec.ID, dir, runtime.ErrExists)
		}
		return runtime.Status{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	inst := newInstance(dir, record{Spec: spec, Labels: labels, State: runtime.StateRunning}, r.log)
	p, err := r.spawn(inst)
	if err == nil {
		inst.setRunning(p)
		if err = inst.persist(); err != nil {
			p.signalGroup(syscall.SIGKILL)
			p.reap()
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return runtime.Status{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	r.insts[spec.ID] = inst
	st := inst.status()
	r.wg.Add(1)
	go r.supervise(inst, p, false)
	inst.log.Info("started instance", "pid", p.pid)
	return st, nil
}

// validate adds the process runtime's requirements to Spec.Validate.
func validate(spec runtime.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if len(spec.Command) == 0 {
		return fmt.Errorf("instance %s: no command: %w", spec.ID, runtime.ErrInvalidSpec)
	}
	if !filepath.IsAbs(spec.Command[0]) {
		return fmt.Errorf("instance %s: command %q is not an absolute path: %w", spec.ID, spec.Command[0], runtime.ErrInvalidSpec)
	}
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return fmt.Errorf("instance %s: bad environment variable %q: %w", spec.ID, k, runtime.ErrInvalidSpec)
		}
	}
	return nil
}

// spawn starts a run of inst's command. Callers hold inst.mu, or own inst
// alone.
func (r *Runtime) spawn(inst *instance) (*proc, error) {
	spec := inst.rec.Spec
	stdout, err := openLog(inst.dir, stdoutLog, r.logMax)
	if err != nil {
		return nil, err
	}
	defer stdout.Close() // the child has its own descriptor once started
	stderr, err := openLog(inst.dir, stderrLog, r.logMax)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	env := make([]string, 0, len(spec.Env)+3) // not nil: nil would pass on ours
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		env = append(env, k+"="+spec.Env[k])
	}
	env = append(env, standardEnv(spec.Env, inst.dir)...)
	cmd := &exec.Cmd{
		Path:        spec.Command[0],
		Args:        spec.Command,
		Env:         env,
		Dir:         inst.dir,
		Stdout:      stdout,
		Stderr:      stderr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", spec.Command[0], err)
	}
	p, err := newProc(cmd.Process.Pid, 0, cmd)
	if err != nil {
		// A child exists until reaped, so this is a pidfd or /proc
		// failure: do not leave a process behind that no one watches.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("watch %s: %w", spec.Command[0], err)
	}
	return p, nil
}

// DefaultPath is the PATH instances get when the allocator has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// standardEnv is what a program expects of any environment, for the
// variables spec does not set: the allocator's PATH (so that a service
// can run the programs a shell on the node would find), HOME in the
// instance's own directory, and a UTF-8 locale.
func standardEnv(spec map[string]string, dir string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = DefaultPath
	}
	var out []string
	for _, kv := range [][2]string{{"PATH", path}, {"HOME", dir}, {"LANG", "C.UTF-8"}} {
		if _, set := spec[kv[0]]; !set {
			out = append(out, kv[0]+"="+kv[1])
		}
	}
	return out
}

// supervise watches inst until it is down for good or the runtime closes.
// It starts from a running process p, or, with p nil, from a process that
// died unseen (adoption), or, with pending, from a restart already counted.
func (r *Runtime) supervise(inst *instance, p *proc, pending bool) {
	defer r.wg.Done()
	inst.restart = backoff.Backoff{Min: r.backoffMin, Max: r.backoffMax}
	for {
		if !pending {
			code := exitUnknown
			if p != nil {
				var ok bool
				if code, ok = r.waitExit(inst, p); !ok {
					return
				}
			}
			if !r.restartDue(inst, p, code) {
				return
			}
		}
		pending = false
		if !r.backoff(inst) {
			return
		}
		var err error
		if p, err = r.respawn(inst); errors.Is(err, errDone) {
			return
		} else if err != nil {
			inst.log.Warn("restart instance", "err", err)
		}
	}
}

// waitExit waits for p to exit, capping its logs meanwhile, and reaps it.
// It reports false if the runtime closed first.
func (r *Runtime) waitExit(inst *instance, p *proc) (code int, ok bool) {
	for {
		exited, err := p.wait(r.closing, r.logEvery)
		if err != nil {
			select {
			case <-r.closing: // Close interrupted the wait
				return 0, false
			default:
			}
			inst.log.Warn("watch process through its pidfd; polling /proc instead", "pid", p.pid, "err", err)
			inst.mu.Lock()
			if p.fd != nil {
				p.fd.Close()
				p.fd = nil
			}
			inst.mu.Unlock()
			continue
		}
		if exited {
			break
		}
		for _, name := range []string{stdoutLog, stderrLog} {
			if err := capLog(filepath.Join(inst.dir, name), r.logMax); err != nil {
				inst.log.Warn("cap instance log", "err", err)
			}
		}
	}
	inst.mu.Lock()
	defer inst.mu.Unlock()
	p.killGroup()
	code = p.reap()
	inst.proc = nil
	return code, true
}

// restartDue records that the run p ended with code (p nil: an adopted
// process died unseen) and decides whether to restart. If not, it marks
// the instance exited.
func (r *Runtime) restartDue(inst *instance, p *proc, code int) bool {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	inst.rec.ExitCode = code
	if p != nil && time.Since(p.started) >= backoffResetAfter {
		inst.restart.Reset()
	}
	spec := inst.rec.Spec
	if inst.rec.Stopping || code == 0 || inst.rec.Restarts >= spec.MaxRestarts {
		inst.log.Info("instance exited", "exit_code", code, "restarts", inst.rec.Restarts, "stopped", inst.rec.Stopping)
		inst.markExited()
		return false
	}
	inst.rec.Restarts++
	inst.rec.Pending = true
	inst.save()
	inst.log.Warn("instance crashed; restarting", "exit_code", code, "restarts", inst.rec.Restarts, "max_restarts", spec.MaxRestarts)
	return true
}

// backoff waits before a restart. It reports false if the instance was
// stopped meanwhile (and marks it exited) or the runtime closed.
func (r *Runtime) backoff(inst *instance) bool {
	t := time.NewTimer(inst.restart.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-inst.stopCh:
		inst.mu.Lock()
		inst.markExited()
		inst.mu.Unlock()
		return false
	case <-r.closing:
		return false
	}
}

// errDone tells supervise to return: the runtime closed or the instance
// was stopped.
var errDone = errors.New("supervision over")

// respawn starts the next run of inst, unless it was stopped or the
// runtime is closing. Checking for closing under inst.mu pairs with Close,
// which closes r.closing before it visits the instances: a run started
// here is either seen by Close or never started.
func (r *Runtime) respawn(inst *instance) (*proc, error) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	select {
	case <-r.closing:
		return nil, errDone
	default:
	}
	if inst.rec.Stopping {
		inst.markExited()
		return nil, errDone
	}
	p, err := r.spawn(inst)
	if err != nil {
		return nil, err
	}
	inst.setRunning(p)
	inst.save()
	inst.log.Info("restarted instance", "pid", p.pid, "restarts", inst.rec.Restarts)
	return p, nil
}

// get returns the instance id.
func (r *Runtime) get(id string) (*instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, runtime.ErrClosed
	}
	inst, ok := r.insts[id]
	if !ok {
		return nil, fmt.Errorf("instance %s: %w", id, runtime.ErrNotFound)
	}
	return inst, nil
}

// Inspect returns the instance's status.
func (r *Runtime) Inspect(ctx context.Context, id string) (runtime.Status, error) {
	inst, err := r.get(id)
	if err != nil {
		return runtime.Status{}, fmt.Errorf("inspect: %w", err)
	}
	inst.mu.Lock()
	defer inst.mu.Unlock()
	return inst.status(), nil
}

// Wait blocks until the instance is down for good.
func (r *Runtime) Wait(ctx context.Context, id string) (runtime.Status, error) {
	inst, err := r.get(id)
	if err != nil {
		return runtime.Status{}, fmt.Errorf("wait: %w", err)
	}
	if err := r.await(ctx, inst, nil); err != nil {
		return runtime.Status{}, fmt.Errorf("wait for %s: %w", id, err)
	}
	inst.mu.Lock()
	defer inst.mu.Unlock()
	return inst.status(), nil
}

// await waits for inst to be down for good, ctx, Close, or timer.
func (r *Runtime) await(ctx context.Context, inst *instance, timer <-chan time.Time) error {
	select {
	case <-inst.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.closing:
		return runtime.ErrClosed
	case <-timer:
		return errTimeout
	}
}

var errTimeout = errors.New("timed out")

// Stop sends SIGTERM to the instance's process group, SIGKILL after
// timeout, and returns once the leader has exited.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	inst, err := r.get(id)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	inst.mu.Lock()
	inst.requestStop()
	inst.signal(syscall.SIGTERM)
	inst.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	err = r.await(ctx, inst, t.C)
	if errors.Is(err, errTimeout) {
		inst.mu.Lock()
		inst.log.Info("instance ignored SIGTERM; killing it", "timeout", timeout)
		inst.signal(syscall.SIGKILL)
		inst.mu.Unlock()
		err = r.await(ctx, inst, nil)
	}
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	return nil
}

// Remove kills the instance if it still runs and deletes its directory.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	inst, err := r.get(id)
	if err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	inst.mu.Lock()
	inst.requestStop()
	inst.signal(syscall.SIGKILL)
	inst.mu.Unlock()
	if err := r.await(ctx, inst, nil); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.insts[id] != inst {
		return fmt.Errorf("remove %s: %w", id, runtime.ErrNotFound) // removed concurrently
	}
	if err := os.RemoveAll(inst.dir); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	delete(r.insts, id)
	inst.log.Info("removed instance")
	return nil
}

// List returns every instance in the state directory, sorted by ID.
func (r *Runtime) List(ctx context.Context) ([]runtime.Status, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("list: %w", runtime.ErrClosed)
	}
	insts := slices.Collect(maps.Values(r.insts))
	r.mu.Unlock()
	out := make([]runtime.Status, 0, len(insts))
	for _, inst := range insts {
		inst.mu.Lock()
		out = append(out, inst.status())
		inst.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b runtime.Status) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Close stops supervising and releases the state directory. Processes keep
// running; a new runtime on the directory adopts them.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.closing)
	insts := slices.Collect(maps.Values(r.insts))
	r.mu.Unlock()
	for _, inst := range insts {
		inst.mu.Lock()
		if inst.proc != nil && inst.proc.fd != nil {
			inst.proc.fd.Close() // wakes the supervisor's wait
		}
		inst.mu.Unlock()
	}
	r.wg.Wait()
	// Unlock before closing: a child forked meanwhile (by this process,
	// for anything) holds a copy of the descriptor until it execs, and
	// the lock would outlive the Close until then; a runtime opened on the
	// directory right after would find it in use.
	_ = unix.Flock(int(r.lock.Fd()), unix.LOCK_UN)
	return r.lock.Close()
}
