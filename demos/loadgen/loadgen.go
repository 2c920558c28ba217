// Package loadgen paces an open-loop load for the bench and the demo:
// requests go out on time whatever the earlier ones do, so a slow service
// meets the load it would meet, rather than a load that waits for it.
package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pacer fires a function at a rate that can change while it runs.
type Pacer struct {
	rate atomic.Int64
	stop func()
}

// Start fires fire(ctx) rate times a second (SetRate changes it), each in
// a goroutine of its own, checking the rate every tick. At most
// maxInFlight run at once; one due beyond that is not fired, and skip is
// called instead.
func Start(ctx context.Context, rate int, tick time.Duration, maxInFlight int, fire func(context.Context), skip func()) *Pacer {
	p := &Pacer{}
	p.rate.Store(int64(rate))
	ctx, cancel := context.WithCancel(ctx)
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	p.stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		last, credit := time.Now(), 0.0
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				credit += float64(p.rate.Load()) * now.Sub(last).Seconds()
				last = now
				for ; credit >= 1; credit-- {
					select {
					case sem <- struct{}{}:
						wg.Go(func() {
							defer func() { <-sem }()
							fire(ctx)
						})
					default:
						skip()
					}
				}
			}
		}
	})
	return p
}

// SetRate changes the rate (requests a second) and returns the old one.
func (p *Pacer) SetRate(rate int) (old int) { return int(p.rate.Swap(int64(rate))) }

// Rate is the current rate.
func (p *Pacer) Rate() int { return int(p.rate.Load()) }

// Stop stops firing and waits for the calls in flight. It may be called
// more than once.
func (p *Pacer) Stop() { p.stop() }
