package registry

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// TestRedialStartsOverAfterAHealthyWatch: watches that break at once are
// opened again after growing delays, up to the cap; once a watch has
// stayed up for watchHealthy, the next break is mended after the minimum
// delay again, not after the grown one.
func TestRedialStartsOverAfterAHealthyWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var gaps []time.Duration // gaps[i]: pause before call i+1
		var ended time.Time
		redial(ctx, func(attempt int) {
			if attempt > 0 {
				gaps = append(gaps, time.Since(ended))
			}
			switch attempt {
			case 8: // this watch stays up
				<-time.After(watchHealthy)
			case 10:
				cancel()
			}
			ended = time.Now()
		})
		ms := time.Millisecond
		want := []time.Duration{
			50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 2000 * ms, 2000 * ms, // calls 0-7 break at once
			50 * ms,  // after the healthy call 8
			100 * ms, // call 9 broke at once again
		}
		if !slices.Equal(gaps, want) {
			t.Fatalf("pauses between watches:\n got %v\nwant %v", gaps, want)
		}
	})
}
