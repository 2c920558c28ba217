package proctest

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestKillUnderKillsWhatRunsInADirectory: a process (and its group) whose
// working directory is under the root is killed; one elsewhere is not.
func TestKillUnderKillsWhatRunsInADirectory(t *testing.T) {
	root := t.TempDir()
	start := func(dir string) *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Skipf("cannot run sleep: %v", err)
		}
		return cmd
	}
	inside, outside := start(root), start(t.TempDir())
	defer outside.Process.Kill()
	if n := KillUnder(root); n != 1 {
		t.Fatalf("KillUnder found %d processes, want 1", n)
	}
	done := make(chan error, 1)
	go func() { done <- inside.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the process under the root still runs")
	}
	if err := outside.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the process elsewhere was killed: %v", err)
	}
}
