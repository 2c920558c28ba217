// Package launch runs this module's binaries as child processes, the way
// a user runs them: each the leader of its own process group, its stdout
// and stderr in files, waited for by a line it prints, stopped with
// SIGTERM and killed once a timeout has passed. It also knows the flags
// that start the daemons of a local network on loopback (Registry,
// Allocator, ClientProxy).
//
// The demo and the bench use it directly, tests through proctest. It is
// built into those binaries, so it must not import testing.
package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Cmd says how to start a process.
type Cmd struct {
	// Name labels the process in errors.
	Name string
	// Path is the binary.
	Path string
	Args []string
	// Env is its whole environment (nil: this process's).
	Env []string
	// OutFile and ErrFile are where its stdout and stderr go; they are
	// created, or truncated.
	OutFile, ErrFile string
}

// Proc is a started process.
type Proc struct {
	Name             string
	OutFile, ErrFile string
	Started          time.Time

	cmd  *exec.Cmd
	done chan struct{}
	err  error // what Wait returned; set before done is closed
}

// poll is how often output and files are looked at while waiting.
const poll = 20 * time.Millisecond

// killWait bounds the wait for a process after SIGKILL to its group.
const killWait = 5 * time.Second

// Start starts c as the leader of its own process group, so that a
// Ctrl-C in the terminal reaches only its parent, which then stops
// everything in order.
func Start(c Cmd) (*Proc, error) {
	out, err := os.Create(c.OutFile)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	errf, err := os.Create(c.ErrFile)
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env = c.Env
	cmd.Stdout, cmd.Stderr = out, errf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		errf.Close()
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	p := &Proc{Name: c.Name, OutFile: c.OutFile, ErrFile: c.ErrFile, Started: time.Now(), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		errf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's id, and its process group's.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (nil: exit status 0), once Done is closed.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// ExitCode is the exit status once the process has exited, -1 if a
// signal ended it or it still runs.
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.Err(), &ee) {
		return ee.ExitCode()
	}
	if p.Err() != nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Stdout returns everything the process wrote to stdout so far.
func (p *Proc) Stdout() string { b, _ := os.ReadFile(p.OutFile); return string(b) }

// Stderr returns everything the process wrote to stderr (the daemons'
// log) so far.
func (p *Proc) Stderr() string { b, _ := os.ReadFile(p.ErrFile); return string(b) }

// Tail returns the last n lines of the process's stderr, on one line.
func (p *Proc) Tail(n int) string {
	lines := LastLines(p.Stderr(), n)
	if len(lines) == 0 {
		return "(empty log)"
	}
	return strings.Join(lines, " / ")
}

// WaitOutput waits until the process's stdout contains s. It fails if the
// process exits first, timeout passes or ctx ends.
func (p *Proc) WaitOutput(ctx context.Context, s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Stdout(), s) {
		select {
		case <-p.done:
			how := p.err
			if how == nil {
				how = errors.New("exit status 0")
			}
			return fmt.Errorf("%s exited (%w) before printing %q; the last lines of %s: %s", p.Name, how, s, p.ErrFile, p.Tail(3))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not print %q within %s; the last lines of %s: %s", p.Name, s, timeout, p.ErrFile, p.Tail(3))
		}
	}
	return nil
}

// Ready waits until the process prints line within timeout, then, unless
// addrFile is "", reads the address the process wrote there.
func (p *Proc) Ready(ctx context.Context, line string, timeout time.Duration, addrFile string) (addr string, err error) {
	if err := p.WaitOutput(ctx, line, timeout); err != nil {
		return "", err
	}
	if addrFile == "" {
		return "", nil
	}
	return FirstLine(ctx, addrFile, 5*time.Second)
}

// Terminate sends SIGTERM and waits up to timeout for the process to
// exit. It reports whether it did (at once if it had already).
func (p *Proc) Terminate(timeout time.Duration) bool {
	if p.Exited() {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Stop terminates the process, and kills its group if it has not exited
// within timeout. It reports whether it had to kill.
func (p *Proc) Stop(timeout time.Duration) (killed bool) {
	if p.Terminate(timeout) {
		return false
	}
	p.KillGroup()
	return true
}

// Kill sends SIGKILL to the process alone, as a crash would end it (what
// it started in process groups of their own lives on), and waits for it.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// KillGroup sends SIGKILL to the process's group and waits a little for
// the process.
func (p *Proc) KillGroup() {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(killWait):
	}
}

// FirstLine waits up to timeout for the file at path to hold a line, as a
// daemon's -addr-file does once it listens, and returns that line.
func FirstLine(ctx context.Context, path string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil {
			if line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n"); line != "" {
				return strings.TrimSpace(line), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s not written within %s", path, timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(poll):
		}
	}
}

// LastLines returns the last n lines of text, leaving out blank lines at
// its ends.
func LastLines(text string, n int) []string {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	return lines[max(len(lines)-n, 0):]
}
