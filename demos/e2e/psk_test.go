package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/proctest"
)

// TestEveryBinaryStopsAtOnceWithoutAPSK: an empty or missing PSK is never
// replaced by a random key; each binary says what is missing and stops.
func TestEveryBinaryStopsAtOnceWithoutAPSK(t *testing.T) {
	n := newNetwork(t)
	boot := "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWLVwJAVcT5MhQwKbx8yibxxKZo1YZwqTvRuAG7W6JsBn1"
	registry := launch.Registry{DataDir: t.TempDir()}
	runs := map[string][]string{
		"registry-service": registry.Args(),
		"allocator":        launch.Allocator{Node: launch.Node{Bootstrap: boot}, DataDir: t.TempDir()}.Args(),
		"proxy":            launch.ClientProxy{Node: launch.Node{Bootstrap: boot}}.Args(),
		"registry-cli":     {"-ephemeral", "-bootstrap", boot, "list"},
	}
	for bin, args := range runs {
		for _, variant := range []struct {
			name  string
			extra []string
			env   []string
		}{
			{"missing", nil, nil},
			{"empty flag", []string{"-psk", ""}, nil},
			{"empty env", nil, []string{"P2P_PSK="}},
			{"blank env", nil, []string{"P2P_PSK=   "}},
		} {
			t.Run(bin+"/"+variant.name, func(t *testing.T) {
				start := time.Now()
				_, errs, code := proctest.Run(t, n.bin[bin], append(variant.extra, args...), variant.env, 20*time.Second)
				if code == 0 {
					t.Fatalf("exit 0 without a PSK")
				}
				if !strings.Contains(errs, "PSK") || !strings.Contains(errs, "P2P_PSK") {
					t.Fatalf("stderr does not name the PSK: %q", errs)
				}
				if took := time.Since(start); took > 3*time.Second {
					t.Fatalf("took %s to refuse", took)
				}
			})
		}
	}
}
