package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process the suite started; its stdout and stderr go to
// files in its network's directory.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     string // stdout path
	errLog  string // stderr path (the daemons' logs)
	started time.Time
	done    chan struct{}
	waitErr error // set before done is closed
}

// tracker remembers every process the suite started, so that nothing
// outlives the run, whatever happens to it.
type tracker struct {
	mu  sync.Mutex
	all []*proc
}

// spawn starts bin with args and env (added to ours) as the leader of its
// own process group, so that a Ctrl-C in the terminal reaches only the
// suite, which then stops everything in order.
func (t *tracker) spawn(dir, name, bin string, args, env []string) (*proc, error) {
	out := filepath.Join(dir, name+".out")
	errLog := filepath.Join(dir, name+".log")
	fo, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	fe, err := os.Create(errLog)
	if err != nil {
		fo.Close()
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = fo, fe
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fo.Close()
		fe.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, errLog: errLog, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		fo.Close()
		fe.Close()
		close(p.done)
	}()
	t.mu.Lock()
	t.all = append(t.all, p)
	t.mu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor waits until the process prints a line containing s.
func (p *proc) waitFor(ctx context.Context, s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(p.out); err == nil && strings.Contains(string(b), s) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before printing %q; last log lines: %s", p.name, p.waitErr, s, p.tail(3))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not print %q within %s; last log lines: %s", p.name, s, timeout, p.tail(3))
		}
	}
}

// stop sends SIGTERM and waits up to timeout, then kills the group. It
// reports whether the process had to be killed.
func (p *proc) stop(timeout time.Duration) bool {
	if p.exited() {
		return false
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(timeout):
		p.kill()
		return true
	}
}

// kill kills the process's group and waits for the process.
func (p *proc) kill() {
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// tail returns the last n lines of the process's stderr, on one line.
func (p *proc) tail(n int) string {
	lines := readLines(p.errLog)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "(empty log)"
	}
	return strings.Join(lines, " / ")
}

// problems returns up to max lines of the process's stderr that report an
// error or a warning.
func (p *proc) problems(max int) []string {
	var out []string
	for _, l := range readLines(p.errLog) {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") ||
			strings.Contains(l, "panic") || strings.Contains(l, "fatal") {
			out = append(out, l)
			if len(out) == max {
				break
			}
		}
	}
	return out
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// stopAll stops the given processes in parallel and returns those that
// had to be killed.
func stopAll(ps []*proc, timeout time.Duration) []*proc {
	var mu sync.Mutex
	var killed []*proc
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.stop(timeout) {
				mu.Lock()
				killed = append(killed, p)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return killed
}

// killAll kills whatever the suite started that still runs.
func (t *tracker) killAll() int {
	t.mu.Lock()
	ps := append([]*proc(nil), t.all...)
	t.mu.Unlock()
	n := 0
	for _, p := range ps {
		if !p.exited() {
			n++
			_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		}
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
	return n
}

// sweepInstances kills instance processes that allocators under dir
// started and left behind (an allocator that was killed leaves its
// instances running, by design, for the next one to adopt). It reads the
// process runtime's state.json files and kills only processes whose
// command is under binDir.
func sweepInstances(dir, binDir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "state.json" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var rec struct {
			Pid int `json:"pid"`
		}
		if json.Unmarshal(b, &rec) != nil || rec.Pid <= 1 {
			return nil
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", rec.Pid))
		if err != nil || !strings.HasPrefix(string(cmdline), binDir+"/") {
			return nil
		}
		_ = syscall.Kill(-rec.Pid, syscall.SIGKILL)
		_ = syscall.Kill(rec.Pid, syscall.SIGKILL)
		n++
		return nil
	})
	return n
}

// firstLine returns the first line of a file a process writes.
func firstLine(ctx context.Context, path string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if lines := readLines(path); len(lines) > 0 && lines[0] != "" {
			return lines[0], nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("%s not written within %s", path, timeout)
}
