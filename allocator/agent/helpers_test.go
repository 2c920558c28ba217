package agent_test

import (
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry/registrytest"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func peerInfo(id peer.ID, addr string) peer.AddrInfo {
	ai := peer.AddrInfo{ID: id}
	if m, err := ma.NewMultiaddr(addr); err == nil {
		if info, err := peer.AddrInfoFromP2pAddr(m); err == nil {
			return *info
		}
	}
	return ai
}

func registryClient(t *testing.T, n *p2ptest.Node) *registry.Client {
	t.Helper()
	return registrytest.Client(t, n)
}

func bootOf(w *world) []peer.AddrInfo { return []peer.AddrInfo{w.reg.Node.AddrInfo()} }
