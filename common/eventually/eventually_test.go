package eventually

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestSucceedsReturnsOnceTheConditionHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		calls := 0
		Succeeds(t, time.Second, func() error {
			if calls++; calls < 4 {
				return errors.New("not yet")
			}
			return nil
		})
		// At once, then after 10, 20 and 40 ms.
		if took := time.Since(start); calls != 4 || took != 70*time.Millisecond {
			t.Fatalf("%d calls in %s; want 4 in 70ms", calls, took)
		}
		True(t, time.Second, "a flag", func() bool { return true })
	})
}

// recorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as testing's does.
type recorder struct {
	testing.TB
	msg atomic.Value
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg.Store(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func TestFailureSaysWhatWasLastSeen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			name string
			run  func(tb testing.TB)
			want string
		}{
			{"Succeeds", func(tb testing.TB) {
				tb.Helper()
				n := 0
				Succeeds(tb, time.Second, func() error { n++; return fmt.Errorf("attempt %d failed", n) })
			}, "condition not met within 1s: attempt "},
			{"True", func(tb testing.TB) {
				tb.Helper()
				True(tb, time.Second, "the door to open", func() bool { return false })
			}, "condition not met within 1s: still waiting for the door to open"},
		} {
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.run(r)
			}()
			<-done
			if msg, _ := r.msg.Load().(string); !strings.HasPrefix(msg, tc.want) {
				t.Errorf("%s: failed with %q; want %q...", tc.name, msg, tc.want)
			}
		}
	})
}
