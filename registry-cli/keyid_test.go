package main

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/keys"
)

// peerIDOfKey creates the key file at path and returns its peer ID.
func peerIDOfKey(t *testing.T, path string) string {
	t.Helper()
	k, _, err := keys.LoadOrCreate(path, "Ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}
