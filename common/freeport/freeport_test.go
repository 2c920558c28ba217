package freeport

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

func TestTakeGivesDistinctFreePortsBelowTheEphemeralRange(t *testing.T) {
	low, high := Range()
	if low < 1024 || high <= low {
		t.Fatalf("range %d-%d", low, high)
	}
	for range 20 {
		ps, err := Take("127.0.0.1", 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int]bool{}
		for _, p := range ps {
			if p < low || p > high || seen[p] {
				t.Fatalf("ports %v: want distinct, in %d-%d", ps, low, high)
			}
			seen[p] = true
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				t.Fatalf("port %d is not free: %v", p, err)
			}
			l.Close()
		}
	}
}

func TestTakeSkipsAndGivesUp(t *testing.T) {
	ps, err := Take("127.0.0.1", 2, func(p int) bool { return p%2 == 0 })
	if err != nil || ps[0]%2 == 0 || ps[1]%2 == 0 {
		t.Fatalf("skip even ports: %v, %v", ps, err)
	}
	if _, err := Take("127.0.0.1", 1, func(int) bool { return true }); err == nil {
		t.Fatal("every port skipped, yet a port was given")
	}
	if One("127.0.0.1") == 0 {
		t.Fatal("One found no port")
	}
}

func TestPreferAndT(t *testing.T) {
	p := T(t)
	if got := Prefer("127.0.0.1", p); got != p {
		t.Fatalf("Prefer(%d) of a free port: %d", p, got)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := Prefer("127.0.0.1", p); got == p || got == 0 {
		t.Fatalf("Prefer(%d) of a taken port: %d", p, got)
	}
}

// Picks in a row never hand out the same port, though the first is not
// bound yet (a registry's etcd client and peer ports, picked one by one).
func TestPicksInARowAreDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 300 {
		p := One("127.0.0.1")
		if p == 0 {
			t.Fatal("no free port")
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

// A pick is marked for the whole machine: another process (which has not
// this one's memory) leaves the port alone until the mark is old.
func TestPicksAreMarkedForOtherProcesses(t *testing.T) {
	p := T(t)
	if !markedElsewhere(p, time.Now()) {
		t.Fatalf("port %d was just picked, yet not marked for other processes", p)
	}
	old := time.Now().Add(-markedFor - time.Minute)
	if err := os.Chtimes(markFile(p), old, old); err != nil {
		t.Fatal(err)
	}
	if markedElsewhere(p, time.Now()) {
		t.Fatalf("port %d, marked long ago, still left alone", p)
	}
}
