// Package proctest runs this module's binaries as separate processes in
// tests, the way a user runs them: built once per test binary, started with
// real flags and environment, their output kept in files, killed or
// stopped and restarted at will, and cleaned up when the test ends (their
// logs are shown when it fails). It is a testing.TB wrapper over package
// launch, which the demo and the bench use; the flags that start a local
// network's daemons are launch's Registry, Allocator and ClientProxy.
package proctest

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/launch"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{} // package -> binary path
)

// Build compiles the module's main packages (import paths relative to
// the module root, e.g. "./registry-service") once per test process, and
// returns the path of the binary of the first.
func Build(t testing.TB, pkgs ...string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir == "" {
		removeStaleBuilds()
		// Not t.TempDir: the binaries are shared by every test of the
		// process, and a later run removes the directory.
		d, err := os.MkdirTemp("", fmt.Sprintf("physarum-bin-%d-", os.Getpid())) //nolint:usetesting // see above
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d // shared across the package's tests; removed by a later run
	}
	root := moduleRoot(t)
	var todo []string
	for _, p := range pkgs {
		if _, ok := built[p]; !ok {
			todo = append(todo, p)
		}
	}
	if len(todo) > 0 {
		cmd := exec.Command("go", append([]string{"build", "-o", buildDir + "/"}, todo...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %v: %v\n%s", todo, err, out)
		}
		for _, p := range todo {
			built[p] = filepath.Join(buildDir, filepath.Base(p))
		}
	}
	return built[pkgs[0]]
}

func moduleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("find module root: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// Proc is a running (or finished) process; its run is the launch.Proc
// of its last start.
type Proc struct {
	Name string
	Bin  string
	Args []string
	Env  []string

	t   testing.TB
	dir string
	run *launch.Proc
}

// Start runs bin with args, and env on top of a minimal environment
// (PATH, HOME). name labels it in logs.
func Start(t testing.TB, name, bin string, args, env []string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Bin: bin, Args: args, Env: env, t: t, dir: t.TempDir()}
	sweepAfter(t, filepath.Dir(p.dir))
	p.start()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- %s stdout:\n%s", p.Name, tail(p.Stdout(), 40))
			t.Logf("--- %s stderr:\n%s", p.Name, tail(p.Stderr(), 60))
		}
	})
	return p
}

func (p *Proc) start() {
	p.t.Helper()
	stamp := time.Now().Format("150405.000")
	run, err := launch.Start(launch.Cmd{
		Name: p.Name, Path: p.Bin, Args: p.Args,
		Env:     append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + p.dir}, p.Env...),
		OutFile: filepath.Join(p.dir, p.Name+"-"+stamp+".out"),
		ErrFile: filepath.Join(p.dir, p.Name+"-"+stamp+".err"),
	})
	if err != nil {
		p.t.Fatal(err)
	}
	p.run = run
}

// Stdout returns everything the process wrote to stdout so far.
func (p *Proc) Stdout() string { return p.run.Stdout() }

// Stderr returns everything the process wrote to stderr so far.
func (p *Proc) Stderr() string { return p.run.Stderr() }

// WaitOutput waits until stdout contains s, failing the test if the
// process exits first or timeout passes.
func (p *Proc) WaitOutput(s string, timeout time.Duration) {
	p.t.Helper()
	if err := p.run.WaitOutput(p.t.Context(), s, timeout); err != nil {
		p.t.Fatalf("%v\nstderr:\n%s", err, tail(p.Stderr(), 30))
	}
}

// Ready waits until the process prints line within timeout, then
// returns the address it wrote to addrFile (unless that is ""), failing
// the test if either does not come.
func (p *Proc) Ready(line string, timeout time.Duration, addrFile string) string {
	p.t.Helper()
	addr, err := p.run.Ready(p.t.Context(), line, timeout, addrFile)
	if err != nil {
		p.t.Fatalf("%v\nstderr:\n%s", err, tail(p.Stderr(), 30))
	}
	return addr
}

// WaitHTTP waits until a GET of url answers 200 OK, failing the test at
// once if the process exits first, or once timeout has passed.
func (p *Proc) WaitHTTP(url string, timeout time.Duration) {
	p.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	eventually.Succeeds(p.t, timeout, func() error {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		if !p.Running() {
			p.t.Fatalf("%s exited before answering %s:\n%s", p.Name, url, p.Stderr())
		}
		return err
	})
}

// Running reports whether the process has not exited.
func (p *Proc) Running() bool { return !p.run.Exited() }

// Kill sends SIGKILL to the process alone (children it started in their
// own process groups live on, as after a crash) and waits for it.
func (p *Proc) Kill() { p.run.Kill() }

// Stop sends SIGTERM and waits up to timeout for the process to exit, then
// kills it. It returns the exit code (-1 if killed).
func (p *Proc) Stop(timeout time.Duration) int {
	if !p.run.Terminate(timeout) {
		p.t.Errorf("%s did not exit within %s of SIGTERM", p.Name, timeout)
		p.Kill()
		return -1
	}
	return p.ExitCode()
}

// Wait waits up to timeout for the process to exit and returns its exit
// code.
func (p *Proc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.run.Done():
	case <-time.After(timeout):
		p.t.Fatalf("%s still running after %s", p.Name, timeout)
	}
	return p.ExitCode()
}

// ExitCode is the exit status once the process has exited.
func (p *Proc) ExitCode() int { return p.run.ExitCode() }

// Restart starts the process again with the same arguments and
// environment (after Kill or Stop).
func (p *Proc) Restart() {
	p.t.Helper()
	if p.Running() {
		p.t.Fatalf("restart %s: still running", p.Name)
	}
	p.start()
}

// Run runs bin to completion and returns its stdout, stderr and exit code.
func Run(t testing.TB, bin string, args, env []string, timeout time.Duration) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), errb.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), 0
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v did not finish within %s\nstderr: %s", filepath.Base(bin), args, timeout, errb.String())
		return "", "", -1
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

var (
	sweepMu sync.Mutex
	sweeps  = map[testing.TB]bool{}
)

// sweepAfter makes sure that once t and its processes are done, nothing
// runs whose working directory is under root (the test's temporary
// directories): the instances its allocators started in their own
// process groups, which outlive an allocator killed with SIGKILL by
// design (the next one adopts them). Registered before the first
// process's cleanup, it runs after all of them.
func sweepAfter(t testing.TB, root string) {
	t.Helper()
	sweepMu.Lock()
	defer sweepMu.Unlock()
	if sweeps[t] {
		return
	}
	sweeps[t] = true
	t.Cleanup(func() {
		sweepMu.Lock()
		delete(sweeps, t)
		sweepMu.Unlock()
		if n := KillUnder(root); n > 0 {
			t.Logf("killed %d processes left running under %s", n, root)
		}
	})
}

// KillUnder kills (with their process groups) the processes whose working
// directory is root or below it, and returns how many it found.
func KillUnder(root string) int {
	es, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range es {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil {
			continue
		}
		cwd = strings.TrimSuffix(cwd, " (deleted)")
		if cwd != root && !strings.HasPrefix(cwd, root+"/") {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		n++
	}
	return n
}

// removeStaleBuilds removes the binaries that earlier test processes
// built (physarum-bin-<pid>-*), once those processes are gone: a test
// binary has no hook after its last test, so each run cleans up after
// the previous ones instead.
func removeStaleBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "physarum-bin-*"))
	for _, d := range dirs {
		f := strings.SplitN(strings.TrimPrefix(filepath.Base(d), "physarum-bin-"), "-", 2)
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 0 || pid > 1<<22 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}
