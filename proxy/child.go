package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// child is the service the proxy runs in instance mode.
type child struct {
	cmd *exec.Cmd
	// exited is closed once the child has exited; code and err are set
	// before.
	exited chan struct{}
	code   int
	err    error
}

// startChild starts argv with the proxy's environment and output. It stays
// in the proxy's process group, so the runtime's signals to the group
// reach both.
func startChild(argv []string, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start service %q: %w", argv[0], err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		c.code = exitCode(cmd, c.err)
		close(c.exited)
	}()
	return c, nil
}

// exitCode is the child's status, 128+n when a signal n ended it.
func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return 1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return cmd.ProcessState.ExitCode()
}

// stop asks the child to end (SIGTERM), and kills it after timeout.
func (c *child) stop(timeout time.Duration) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}
