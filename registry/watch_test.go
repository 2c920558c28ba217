package registry

import (
	"context"
	"encoding/json"
	"log/slog"
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

// FuzzWatchEvent feeds watch events as a registry might send them (or a
// broken one): decoding and applying any of them never panics, a route
// always says whether a version serves, and a watch of one service keeps
// no other's route.
func FuzzWatchEvent(f *testing.F) {
	for _, s := range []string{
		`{"Type":"snapshot","Instances":[{"ID":"i-1","Service":"hello","Version":2}],"Routes":[{"service":"hello","version":2,"start":{"Version":1}}]}`,
		`{"Type":"route","Routes":[{"service":"hello","version":3,"switched":true,"equivalent_versions":[1]}]}`,
		`{"Type":"route","Routes":[{"service":"other","version":9}]}`,
		`{"Type":"route","Routes":[{"service":"hello"}]}`,
		`{"Type":"put","Instances":[{"ID":"i-2","Service":"hello","Version":-4}]}`,
		`{"Type":"delete","ID":"i-1"}`,
		`{"Type":"ping"}`, `{}`, `null`, `{"Routes":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev WatchEvent
		if json.Unmarshal(b, &ev) != nil {
			return
		}
		w := &InstanceWatch{c: &Client{}, service: "hello", insts: map[string]Instance{}, routes: map[string]Route{}, changed: make(chan struct{})}
		w.c.reach = newReachability(slog.New(slog.DiscardHandler))
		w.apply(ev)
		rt := w.Route()
		if rt.Service != "hello" {
			t.Fatalf("the watch of hello answers the route of %q", rt.Service)
		}
		for _, in := range w.Instances() {
			_ = rt.Serves(in.Version)
		}
		for _, r := range ev.Routes {
			_ = r.Serves(r.Version)
		}
	})
}
