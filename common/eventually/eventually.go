// Package eventually waits in tests for what other goroutines or
// processes make true: it polls a condition with a deadline, never
// sleeps for a fixed time, and fails the test with the condition's last
// error. It is the one poll helper of the module's tests.
package eventually

import (
	"fmt"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/backoff"
)

// Polling starts at once and backs off to a short interval, so that a
// condition met quickly is seen quickly and a slow one costs little.
const (
	pollMin = 10 * time.Millisecond
	pollMax = 50 * time.Millisecond
)

// Succeeds calls cond until it returns nil, and fails t with cond's last
// error once timeout has passed or t's context has ended. cond runs on
// t's goroutine, so it may call t.Fatal itself (for what will never
// become true).
func Succeeds(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	wait := backoff.Backoff{Min: pollMin, Max: pollMax}
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("condition not met within %s: %v", timeout, err)
		case <-t.Context().Done():
			t.Fatalf("test ended before the condition was met: %v", err)
		case <-time.After(wait.Next()):
		}
	}
}

// True calls cond until it returns true, and fails t, saying it was
// waiting for what, once timeout has passed.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Succeeds(t, timeout, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("still waiting for %s", what)
	})
}
