package process

import "testing"

func TestParseStatTicks(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		pgid       int
		ticks      uint64
		ok         bool
	}{
		{"plain", "42 (task) S 1 40 40 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 500 0 0", 40, 13, true},
		{"odd name", "42 (a) (b c) R 1 41 41 0 -1 0 0 0 0 0 100 50 0 0 20 0 1 0 500 0 0", 41, 150, true},
		{"no name", "42 task S 1 40 40", 0, 0, false},
		{"cut short", "42 (task) S 1 40 40 0 -1 0 0 0 0 0 7", 0, 0, false},
		{"not a number", "42 (task) S 1 x 40 0 -1 0 0 0 0 0 7 3 2 1 20", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pgid, ticks, ok := parseStatTicks([]byte(tc.stat))
			if pgid != tc.pgid || ticks != tc.ticks || ok != tc.ok {
				t.Errorf("got group %d, %d ticks, %v; want %d, %d, %v", pgid, ticks, ok, tc.pgid, tc.ticks, tc.ok)
			}
		})
	}
}
