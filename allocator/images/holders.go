package images

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/p2p"
)

// Namespace is the DHT rendezvous under which holders of an image announce
// it: its provider records are keyed by the hash of this name.
func Namespace(id string) string { return "physarum/image/" + id }

// DHTHolders finds holders through the node's DHT.
type DHTHolders struct {
	Node *p2p.Node
}

var _ Holders = DHTHolders{}

// Holders looks up the image's provider records, dials the peers they name
// and returns those it reached, nearest (lowest measured RTT) first.
func (d DHTHolders) Holders(ctx context.Context, id string) ([]peer.ID, error) {
	infos, err := d.Node.FindPeers(ctx, Namespace(id))
	if err != nil {
		return nil, err
	}
	h := d.Node.Host()
	reached := make([]bool, len(infos))
	var wg sync.WaitGroup
	for i, ai := range infos {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, d.Node.Config().Timing.DialTimeout)
			defer cancel()
			reached[i] = h.Connect(cctx, ai) == nil
		})
	}
	wg.Wait()
	var ids []peer.ID
	for i, ai := range infos {
		if reached[i] {
			ids = append(ids, ai.ID)
		}
	}
	results := d.Node.RTT().Measure(ctx, ids)
	rtt := make(map[peer.ID]time.Duration, len(ids))
	for i, r := range results {
		rtt[ids[i]] = time.Hour // unmeasured: last
		if r.Err == nil {
			rtt[ids[i]] = r.RTT
		}
	}
	slices.SortStableFunc(ids, func(a, b peer.ID) int { return cmp.Compare(rtt[a], rtt[b]) })
	return ids, nil
}
