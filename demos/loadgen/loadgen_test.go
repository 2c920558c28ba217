package loadgen

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
)

func TestPacerFiresAtItsRateAndSkipsBeyondItsLimit(t *testing.T) {
	var fired, skipped atomic.Int64
	block := make(chan struct{})
	p := Start(t.Context(), 200, 5*time.Millisecond, 4, func(ctx context.Context) {
		fired.Add(1)
		select {
		case <-block:
		case <-ctx.Done():
		}
	}, func() { skipped.Add(1) })
	// Four calls block: the rest are skipped, not queued.
	eventually.True(t, 5*time.Second, "calls beyond the limit skipped", func() bool { return skipped.Load() >= 20 })
	if n := fired.Load(); n != 4 {
		t.Fatalf("%d calls fired while 4 were in flight, want 4", n)
	}
	close(block)
	if old := p.SetRate(0); old != 200 || p.Rate() != 0 {
		t.Fatalf("SetRate returned %d, rate now %d", old, p.Rate())
	}
	p.Stop() // returns once the calls in flight have
	p.Stop()
}
