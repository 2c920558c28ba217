package registry

import "github.com/libp2p/go-libp2p/core/peer"

// Candidates exposes the client's registry order to tests.
func Candidates(c *Client) []peer.ID { return c.find.candidates() }
