package rtt

import (
	"testing"
	"time"
)

func TestPerfIndIsInMilliseconds(t *testing.T) {
	p := FromDuration(1500 * time.Microsecond)
	if p.RTT != 1.5 {
		t.Fatalf("1.5ms = %v", p.RTT)
	}
	if p.Duration() != 1500*time.Microsecond {
		t.Fatalf("round trip = %s", p.Duration())
	}
}

func TestSmoothing(t *testing.T) {
	tr := NewTracker(nil, Options{Alpha: 0.5})
	tr.Record("p", 10*time.Millisecond)
	if got := tr.Record("p", 20*time.Millisecond); got != 15*time.Millisecond {
		t.Fatalf("EWMA = %s, want 15ms", got)
	}
	s, ok := tr.Get("p")
	if !ok || s.Last != 20*time.Millisecond {
		t.Fatalf("sample %+v", s)
	}
	if got := tr.Record("q", 0); got <= 0 {
		t.Fatalf("a zero sample gives RTT %s; RTTs must stay positive", got)
	}
	tr.Forget("p")
	if _, ok := tr.Get("p"); ok {
		t.Fatal("Forget kept the peer")
	}
}
