// Package backoff spaces out retries: capped exponential delays that start
// over after a success. It is the one backoff of the module (restarts of
// instances, reconnecting to bootstrap peers, advertising, joining the
// registry, the registry's instance watch); it only computes delays, and
// the caller waits them out in its own select, next to its context.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff gives the delays before successive retries: Min first, then each
// one Factor times the last, never more than Max. Reset starts over from
// Min. The zero value with Min and Max set is ready to use; a Backoff is
// not safe for concurrent use.
type Backoff struct {
	// Min is the first delay (Min <= 0: no delay).
	Min time.Duration
	// Max caps every delay; Max < Min is taken as Min.
	Max time.Duration
	// Factor is how much each delay grows over the last (0: 2).
	Factor float64
	// Jitter is the fraction of each delay taken off at random, so that
	// peers retrying together spread out: 0.2 waits 80% to 100% of it.
	// 0 is none.
	Jitter float64

	last time.Duration // the last delay before jitter; 0 before the first
}

// Next returns the delay before the next retry and counts that retry.
func (b *Backoff) Next() time.Duration {
	hi := max(b.Max, b.Min)
	if b.last <= 0 {
		b.last = b.Min
	} else {
		f := b.Factor
		if f <= 0 {
			f = 2
		}
		if next := float64(b.last) * f; next < float64(hi) {
			b.last = time.Duration(next)
		} else {
			b.last = hi
		}
	}
	d := max(b.last, 0)
	if b.Jitter > 0 && d > 0 {
		d -= time.Duration(rand.Float64() * min(b.Jitter, 1) * float64(d))
	}
	return d
}

// Reset makes the next delay Min again, after a success or a healthy run.
func (b *Backoff) Reset() { b.last = 0 }
