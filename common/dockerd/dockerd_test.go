package dockerd

import (
	"net"
	"testing"
)

// TestADaemonOfOurOwnLeavesTheMachinesBridgeAlone: a daemon started with
// --bridge none deletes the interface docker0 of its network namespace,
// the machine's daemon's bridge, and every container on the default
// network fails to start after it. Ours gets a bridge of its own, removed
// with it.
func TestADaemonOfOurOwnLeavesTheMachinesBridgeAlone(t *testing.T) {
	_, before := net.InterfaceByName("docker0")
	d := Test(t)
	br := d.bridge
	if _, err := net.InterfaceByName(br); err != nil {
		t.Fatalf("the daemon's own bridge %s: %v", br, err)
	}
	d.Close()
	if _, err := net.InterfaceByName(br); err == nil {
		t.Errorf("the daemon's bridge %s outlived it", br)
	}
	if _, after := net.InterfaceByName("docker0"); before == nil && after != nil {
		t.Fatalf("docker0 is gone after a daemon of our own: %v", after)
	}
}
