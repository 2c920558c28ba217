package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/physarum-p2p/physarum/allocator/runtime"
)

// exitUnknown is the exit code recorded when a process died without this
// runtime being able to learn its status: it was adopted, not started.
const exitUnknown = -1

// pollInterval is how often liveness is polled where pidfds do not work
// (Linux before 5.3).
const pollInterval = 150 * time.Millisecond

// proc is one run of an instance: the leader of its process group.
type proc struct {
	pid int
	// startTime is field 22 of /proc/<pid>/stat (clock ticks after boot):
	// with the pid, it names this process and not a later one that reuses
	// the pid.
	startTime uint64
	started   time.Time
	// cmd is set when this runtime started the process, which makes it a
	// child it can reap; nil when adopted.
	cmd *exec.Cmd
	// fd is a pidfd registered with the Go poller, readable once the
	// process exits; nil where pidfds do not work. Runtime.Close closes it
	// to wake the supervisor.
	fd *os.File
}

// newProc completes a proc for a process that has been started (cmd set)
// or found (cmd nil). A found process must still be alive and have
// started at startTime: otherwise pid names a later process.
func newProc(pid int, startTime uint64, cmd *exec.Cmd) (*proc, error) {
	fd, err := openPidfd(pid)
	if err != nil {
		return nil, err
	}
	// Check after opening the pidfd: if pid still names the right
	// process now, the pidfd refers to it. (A child may have exited
	// already; it stays until reaped, and the pidfd reports its exit.)
	state, start, err := procStat(pid)
	if err == nil && cmd == nil && (state == 'Z' || state == 'X') {
		err = fmt.Errorf("process %d has exited", pid)
	}
	if err == nil && cmd == nil && start != startTime {
		err = fmt.Errorf("pid %d was reused", pid)
	}
	if err != nil {
		if fd != nil {
			fd.Close()
		}
		return nil, err
	}
	return &proc{pid: pid, startTime: start, started: time.Now(), cmd: cmd, fd: fd}, nil
}

// pidfdDisabled makes openPidfd act as on a kernel without pidfds, so
// that tests cover the fallback.
var pidfdDisabled atomic.Bool

// openPidfd returns a pollable pidfd for pid, or nil without error where
// pidfds or polling them are not supported, so that callers poll /proc.
func openPidfd(pid int) (*os.File, error) {
	if pidfdDisabled.Load() {
		return nil, nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open pidfd of %d: %w", pid, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open pidfd of %d: %w", pid, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	// A file the poller did not take has no deadlines: fall back to /proc.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, nil
	}
	return f, nil
}

// wait blocks until the process exits (true) or d passes (false). It
// fails when interrupted (closing closed, or the pidfd closed by
// Runtime.Close) or when the pidfd fails.
func (p *proc) wait(closing <-chan struct{}, d time.Duration) (bool, error) {
	if p.fd == nil {
		return p.pollExit(closing, d)
	}
	if err := p.fd.SetReadDeadline(time.Now().Add(d)); err != nil {
		return false, fmt.Errorf("poll pidfd: %w", err)
	}
	rc, err := p.fd.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("poll pidfd: %w", err)
	}
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err == nil && n > 0
		}
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false, nil
	default:
		return false, fmt.Errorf("poll pidfd: %w", err)
	}
}

// pollExit watches /proc every pollInterval for up to d.
func (p *proc) pollExit(closing <-chan struct{}, d time.Duration) (bool, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if !alive(p.pid, p.startTime) {
			return true, nil
		}
		select {
		case <-closing:
			return false, runtime.ErrClosed
		case <-deadline.C:
			return false, nil
		case <-tick.C:
		}
	}
}

// signalGroup sends sig to the process group the process leads. For a
// child not yet reaped the group cannot have been reused; for an adopted
// process the start time is checked first.
func (p *proc) signalGroup(sig syscall.Signal) {
	if p.cmd == nil && !alive(p.pid, p.startTime) {
		return
	}
	_ = syscall.Kill(-p.pid, sig) // ESRCH: nothing left to signal
}

// killGroup kills what is left of the process group once the leader has
// exited. Called right after the exit is seen: a group with members left
// keeps its ID, and one without is very unlikely to have been reused
// within milliseconds.
func (p *proc) killGroup() {
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // ESRCH: nothing left
}

// reap collects the exit status of the process, which has exited. A
// process this runtime did not start is reaped here only if it is a child
// after all (a runtime closed and reopened within one process); otherwise
// init reaps it and the status is lost.
func (p *proc) reap() int {
	if p.fd != nil {
		p.fd.Close()
	}
	if p.cmd != nil {
		_ = p.cmd.Wait() // the status is in ProcessState either way
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			return exitStatus(ws)
		}
		return exitUnknown
	}
	var ws unix.WaitStatus
	pid, err := unix.Wait4(p.pid, &ws, unix.WNOHANG, nil)
	if err != nil || pid != p.pid {
		return exitUnknown
	}
	return exitStatus(syscall.WaitStatus(ws))
}

// exitStatus reports death by signal n as 128+n, as shells and Docker do.
func exitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// alive reports whether pid names a live (not zombie) process that
// started at startTime.
func alive(pid int, startTime uint64) bool {
	state, start, err := procStat(pid)
	return err == nil && state != 'Z' && state != 'X' && start == startTime
}

// procStat reads the state letter (field 3) and the start time (field 22)
// of /proc/<pid>/stat. Field 2, the command name, may hold spaces and
// parentheses, so fields are counted from the last ')'.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read stat of process %d: %w", pid, err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse stat of process %d: no command name", pid)
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("parse stat of process %d: %d fields", pid, len(fields)+2)
	}
	start, err = strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse stat of process %d: start time: %w", pid, err)
	}
	return fields[0][0], start, nil
}
