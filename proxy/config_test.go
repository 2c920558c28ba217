package main

import (
	"io"
	"testing"
)

func TestProcsFlag(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want int
		ok   bool
	}{
		{[]string{"8080"}, 1, true},
		{[]string{"-procs", "0", "8080"}, 0, true},
		{[]string{"-procs", "4", "8080"}, 4, true},
		{[]string{"-procs", "-1", "8080"}, 0, false},
	} {
		c, err := parseFlags(tc.args, io.Discard, noEnv)
		if (err == nil) != tc.ok {
			t.Fatalf("parseFlags(%q) = %v, want ok %v", tc.args, err, tc.ok)
		}
		if err == nil && c.procs != tc.want {
			t.Fatalf("parseFlags(%q): procs %d, want %d", tc.args, c.procs, tc.want)
		}
	}
}
