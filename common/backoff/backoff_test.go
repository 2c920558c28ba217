package backoff

import (
	"slices"
	"testing"
	"time"
)

func TestNextDoublesUpToMaxAndResetStartsOver(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	b.Reset()
	if d := b.Next(); d != 100*time.Millisecond {
		t.Fatalf("first delay after Reset: %v, want the minimum", d)
	}
}

func TestNextNeverOverflows(t *testing.T) {
	b := Backoff{Min: time.Nanosecond, Max: time.Duration(1<<63 - 1), Factor: 1000}
	prev := time.Duration(0)
	for range 100 {
		d := b.Next()
		if d < prev {
			t.Fatalf("delay went down from %v to %v", prev, d)
		}
		prev = d
	}
	if prev != b.Max {
		t.Fatalf("last delay %v, want the maximum", prev)
	}
}

func TestFactorAndJitter(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: time.Second, Factor: 3, Jitter: 0.5}
	for i, base := range []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 90 * time.Millisecond} {
		if d := b.Next(); d > base || d < base/2 {
			t.Fatalf("delay %d: %v, want within [%v, %v]", i, d, base/2, base)
		}
	}
}

func TestMaxBelowMinIsMin(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Millisecond}
	for range 3 {
		if d := b.Next(); d != time.Second {
			t.Fatalf("delay %v, want the minimum", d)
		}
	}
}
