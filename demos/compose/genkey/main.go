// Command genkey creates a libp2p identity (an Ed25519 key file, mode
// 0600) when the file does not exist yet, and prints the key's peer ID.
// demos/compose/up.sh runs it on the host before the network starts, so
// that the Compose file can name the registry, its bootstrap peer, by a
// fixed /dns4/registry/tcp/4001/p2p/<peer ID> address.
//
// Usage:
//
//	genkey KEYFILE
package main

import (
	"fmt"
	"os"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/keys"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] == "-h" || os.Args[1] == "-help" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: genkey KEYFILE (creates it when missing; prints its peer ID)")
		os.Exit(2)
	}
	id, err := run(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "genkey:", err)
		os.Exit(1)
	}
	fmt.Println(id)
}

// run loads or creates the key in path and returns its peer ID.
func run(path string) (peer.ID, error) {
	priv, _, err := keys.LoadOrCreate(path, "Ed25519", 0)
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(priv)
}
