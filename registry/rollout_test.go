package registry_test

import (
	"slices"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

func TestRouteOfARollout(t *testing.T) {
	bg := registry.Strategy{Type: registry.StrategyBlueGreen}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old := registry.ServiceInfo{CpuReq: 7}
	for _, tc := range []struct {
		name   string
		ro     registry.Rollout
		serves []int // of versions 1 to 5
		start  int   // the version on-demand instances start from (0: the current one)
	}{
		{"rolling", registry.Rollout{State: registry.RolloutRunning, From: 2, To: 3}, []int{1, 2, 3, 4, 5}, 0},
		{"blue-green before the switch", registry.Rollout{Strategy: bg, State: registry.RolloutRunning, From: 2, To: 3, Previous: old}, []int{1, 2}, 2},
		{"blue-green switched", registry.Rollout{Strategy: bg, State: registry.RolloutRunning, From: 2, To: 3, Switched: at}, []int{3, 4, 5}, 0},
		{"blue-green succeeded", registry.Rollout{Strategy: bg, State: registry.RolloutSucceeded, From: 2, To: 3, Switched: at}, []int{3, 4, 5}, 0},
		{"blue-green succeeded with nothing to switch", registry.Rollout{Strategy: bg, State: registry.RolloutSucceeded, From: 2, To: 3}, []int{3, 4, 5}, 0},
		{"a revert: the old set's versions", registry.Rollout{Strategy: bg, State: registry.RolloutRunning, From: 3, To: 4, Equivalent: []int{1, 2}, RevertOf: 3, Switched: at}, []int{1, 2, 4, 5}, 0},
		{"blue-green rolled back, before its revert is written", registry.Rollout{Strategy: bg, State: registry.RolloutRolledBack, From: 2, To: 3, Previous: old, Switched: at}, []int{1, 2}, 2},
		{"blue-green failed before its switch", registry.Rollout{Strategy: bg, State: registry.RolloutFailed, From: 2, To: 3, Previous: old}, []int{1, 2}, 2},
		{"a revert that failed", registry.Rollout{Strategy: bg, State: registry.RolloutFailed, From: 3, To: 4, RevertOf: 3, Switched: at}, []int{1, 2, 3, 4, 5}, 0},
	} {
		rt := tc.ro.Route()
		var serves []int
		for v := 1; v <= 5; v++ {
			if rt.Serves(v) {
				serves = append(serves, v)
			}
		}
		if !slices.Equal(serves, tc.serves) {
			t.Errorf("%s: versions %v serve, want %v", tc.name, serves, tc.serves)
		}
		if !rt.Serves(0) {
			t.Errorf("%s: an instance of no known version does not serve", tc.name)
		}
		switch {
		case tc.start == 0 && rt.Start != nil:
			t.Errorf("%s: starts from %+v, want the current definition", tc.name, rt.Start)
		case tc.start != 0 && (rt.Start == nil || rt.Start.Version != tc.start || rt.Start.CpuReq != 7):
			t.Errorf("%s: starts from %+v, want version %d of the old definition", tc.name, rt.Start, tc.start)
		}
	}
}
