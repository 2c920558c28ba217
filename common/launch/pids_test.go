package launch

import (
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/physarum-p2p/physarum/common/instenv"
)

func TestInstanceIDVar(t *testing.T) {
	if instanceIDVar != instenv.InstanceID {
		t.Fatalf("launch looks for %s, instances carry %s", instanceIDVar, instenv.InstanceID)
	}
}

func TestInstancePIDsFindsAProcessByItsEnvironment(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), instanceIDVar+"=pids-test-1")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep to start: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if got := InstancePIDs("pids-test-1"); !slices.Equal(got, []int{cmd.Process.Pid}) {
		t.Fatalf("InstancePIDs: %v, want [%d]", got, cmd.Process.Pid)
	}
	if got := InstancePIDs("pids-test-2"); len(got) != 0 {
		t.Fatalf("InstancePIDs of another ID: %v", got)
	}
}
