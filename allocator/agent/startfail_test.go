package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
)

func TestStartFailuresBackOffPerServiceAndDouble(t *testing.T) {
	a, b := startKey{"a", 1}, startKey{"b", 1}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := newStartFailures(10*time.Second, 40*time.Second)
	f.now = func() time.Time { return now }

	if err := f.check(a); err != nil {
		t.Fatalf("no failure yet: %v", err)
	}
	if wait := f.failed(a, "command not found"); wait != 10*time.Second {
		t.Fatalf("first backoff %s, want 10s", wait)
	}
	now = now.Add(3 * time.Second)
	err := f.check(a)
	if wire.CodeOf(err) != wire.CodeRuntimeError || !strings.Contains(err.Error(), "command not found") ||
		!strings.Contains(err.Error(), "not trying again here for 7s") {
		t.Fatalf("within the backoff: %v", err)
	}
	if err := f.check(b); err != nil {
		t.Fatalf("another service is not held back: %v", err)
	}
	if err := f.check(startKey{"a", 2}); err != nil {
		t.Fatalf("another version is not held back (a revert starts the old one): %v", err)
	}
	if err := f.check(a); !strings.Contains(err.Error(), "a version 1 failed") {
		t.Fatalf("the refusal does not name the version: %v", err)
	}
	now = now.Add(7 * time.Second)
	if err := f.check(a); err != nil {
		t.Fatalf("after the backoff: %v", err)
	}
	// Failures in a row double it, up to the cap.
	for _, want := range []time.Duration{20, 40, 40} {
		if wait := f.failed(a, "again"); wait != want*time.Second {
			t.Fatalf("backoff %s, want %ds", wait, want)
		}
		now = now.Add(want * time.Second)
	}
	// A success forgets; so does a failure long after the last.
	f.started(a)
	if wait := f.failed(a, "x"); wait != 10*time.Second {
		t.Fatalf("after a success: %s", wait)
	}
	f.failed(a, "x")
	now = now.Add(time.Hour)
	if wait := f.failed(a, "x"); wait != 10*time.Second {
		t.Fatalf("an hour later: %s", wait)
	}
}
