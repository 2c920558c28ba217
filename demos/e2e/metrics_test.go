package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
)

// TestEveryDaemonExitsWhenItsMetricsPortIsTaken: a part of a daemon that
// cannot run stops the daemon with its error; nothing runs on half-started.
func TestEveryDaemonExitsWhenItsMetricsPortIsTaken(t *testing.T) {
	n := newNetwork(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	// Unreachable: the metrics port is bound before the network is joined.
	boot := "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWLVwJAVcT5MhQwKbx8yibxxKZo1YZwqTvRuAG7W6JsBn1"
	env := []string{"P2P_PSK=" + p2ptest.DefaultPassphrase}
	registry := launch.Registry{Node: launch.Node{Metrics: addr}, DataDir: t.TempDir()}
	runs := map[string][]string{
		"registry-service": registry.Args(),
		"allocator":        launch.Allocator{Node: launch.Node{Bootstrap: boot, Metrics: addr}, DataDir: t.TempDir()}.Args(),
		"proxy":            launch.ClientProxy{Node: launch.Node{Bootstrap: boot, Metrics: addr}}.Args(),
	}
	for bin, args := range runs {
		t.Run(bin, func(t *testing.T) {
			_, errs, code := proctest.Run(t, n.bin[bin], args, env, 20*time.Second)
			if code != 1 {
				t.Fatalf("exit %d with its metrics port taken, want 1; stderr: %s", code, errs)
			}
			if !strings.Contains(errs, addr) || !strings.Contains(errs, "address already in use") {
				t.Fatalf("stderr does not say which address is taken: %q", errs)
			}
		})
	}
}
