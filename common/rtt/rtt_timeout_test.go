package rtt_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/rtt"
)

// TestMeasureTimesOutAPeerThatNeverAnswers: a peer that accepts the ping
// stream and never echoes is given up on after the per-peer timeout,
// while the other peers of the same parallel measurement get their RTT.
// Only the Tracker's timeout can end that ping: the connection is up and
// the stream open, so nothing fails on its own, and the caller's context
// outlives the timeout by far.
func TestMeasureTimesOutAPeerThatNeverAnswers(t *testing.T) {
	const timeout = time.Second
	nodes := p2ptest.Network(t, 4, nil)
	silent := nodes[3]
	silentPings(silent)
	var ids []peer.ID
	for _, n := range nodes[1:] {
		ids = append(ids, n.ID())
	}
	tr := rtt.NewTracker(nodes[0].Host(), rtt.Options{Timeout: timeout})
	// Without the per-peer timeout the silent ping ends here instead.
	ctx, cancel := context.WithTimeout(t.Context(), 10*timeout)
	defer cancel()
	start := time.Now()
	res := tr.Measure(ctx, ids)
	took := time.Since(start)
	t.Logf("measurement with a silent peer: %s", took)
	for _, r := range res[:2] {
		if r.Err != nil || r.RTT <= 0 {
			t.Errorf("answering peer %s: rtt %s, err %v", r.Peer.ShortString(), r.RTT, r.Err)
		}
	}
	if err := res[2].Err; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent peer: rtt %s, err %v; want a timeout", res[2].RTT, err)
	}
	// The timeout, and not something sooner, ended the measurement; the
	// slack is for a busy machine.
	if took < timeout || took > timeout+timeout/2 {
		t.Errorf("measurement with a silent peer took %s, want the %s timeout", took, timeout)
	}
	if _, ok := tr.Get(silent.ID()); ok {
		t.Error("the silent peer has an RTT")
	}
}

// silentPings makes n accept ping streams and never answer them. Each
// stream is held until the pinging side resets it.
func silentPings(n *p2ptest.Node) {
	n.Host().SetStreamHandler(ping.ID, func(s network.Stream) {
		_, _ = io.Copy(io.Discard, s)
		_ = s.Reset()
	})
}
