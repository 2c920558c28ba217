package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is one process of the demo network, its output in the work dir.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  string // stdout log path
	done chan struct{}
}

func (d *demo) spawn(name, bin string, args []string, env ...string) (*proc, error) {
	out := filepath.Join(d.dir, name+".out")
	errLog := filepath.Join(d.dir, name+".log")
	fo, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	fe, err := os.Create(errLog)
	if err != nil {
		fo.Close()
		return nil, err
	}
	cmd := exec.Command(filepath.Join(d.o.bin, bin), args...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = fo, fe
	// Own process group: Ctrl-C in the terminal reaches the demo, which
	// then stops everything in order (allocators stop their instances).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fo.Close()
		fe.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		fo.Close()
		fe.Close()
		close(p.done)
	}()
	d.procs = append(d.procs, p)
	return p, nil
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
			return fmt.Errorf("%s exited before it was ready (see %s and its .log)", p.name, p.out)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s (see %s and its .log)", p.name, timeout, p.out)
		}
	}
}

// stop sends SIGTERM and waits, then kills.
func (p *proc) stop(timeout time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// firstLine returns the first line of a file written by a process.
func firstLine(path string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			if sc.Scan() && sc.Text() != "" {
				f.Close()
				return sc.Text(), nil
			}
			f.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("%s not written within %s", path, timeout)
}
