package agent_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/registry/registrytest"
)

// TestRecordPutWhileNoRegistryAnswersIsPutAgain: an instance changes state
// (a crash and restart) while the registry does not answer; once it
// answers again, the next heartbeat puts the record, instead of the
// registry showing the old state until the next change.
func TestRecordPutWhileNoRegistryAnswersIsPutAgain(t *testing.T) {
	w := newWorld(t)
	a, node := w.allocator(allocOpts{cfg: agent.Config{LeaseTTL: 6 * time.Second, MaxRestarts: 3}})
	w.service("steady", 10, 0, nil)
	resp, err := w.deploy(node, "steady", false)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Instance.ID

	w.reg.Server.Close()
	for _, pid := range launch.InstancePIDs(id) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	eventually.Succeeds(t, 20*time.Second, func() error {
		for _, in := range a.Instances() {
			if in.ID == id && in.Restarts == 1 && in.State == "running" {
				return nil
			}
		}
		return fmt.Errorf("instance %s not restarted yet: %+v", id, a.Instances())
	})
	registrytest.Serve(t, w.reg.Node, w.reg.Member)
	eventually.Succeeds(t, 20*time.Second, func() error {
		if rec, ok := w.record(id); !ok || rec.Restarts != 1 {
			return fmt.Errorf("registry shows %+v", rec)
		}
		return nil
	})
}
