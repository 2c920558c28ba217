package router

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/registry"
)

const ms = time.Millisecond

func TestTwoChoicesTakesTheLessBusyOfTwoDifferentInstances(t *testing.T) {
	mk := func(name string, inFlight int64) *target {
		tg := &target{peer: id(name)}
		tg.inFlight.Store(inFlight)
		return tg
	}
	a, b, c := mk("a", 3), mk("b", 5), mk("c", 1)
	pool := []*target{a, b, c}
	for _, tc := range []struct {
		i, j int // the two draws
		want *target
	}{
		{0, 0, a}, // a or b (the second draw skips the first)
		{1, 1, c}, // b or c
		{2, 0, c}, // c or a
		{1, 0, a}, // b or a
		{2, 1, c}, // c or b
		{0, 1, c}, // a or c
	} {
		if got := twoChoices(pool, draws(tc.i, tc.j)); got != tc.want {
			t.Errorf("draws %d, %d: got %s, want %s", tc.i, tc.j, got.peer, tc.want.peer)
		}
	}
	if got := twoChoices(pool[:1], draws(0)); got != a {
		t.Errorf("one instance: got %v", got)
	}
	if got := twoChoices(nil, draws(0)); got != nil {
		t.Errorf("no instance: got %v", got)
	}
}

func TestPickSpreadsRequestsOverTheInstancesWithinTheSoftRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{}, rtts(10*ms, 30*ms), map[string]time.Duration{"a": 2 * ms, "b": 4 * ms})
		// The draws always start from a: only the load sends requests to b.
		if got, want := tr.hold(10), map[string]int{"a": 5, "b": 5}; !maps.Equal(got, want) {
			t.Fatalf("10 requests in flight went to %v, want %v", got, want)
		}
	})
}

func TestPickNeverUsesAnInstanceBeyondTheHardRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{}, rtts(10*ms, 30*ms), map[string]time.Duration{"a": 50 * ms, "b": 20 * ms})
		tr.rand = draws(0, 1, 1, 0)
		if got, want := tr.hold(10), map[string]int{"b": 10}; !maps.Equal(got, want) {
			t.Fatalf("10 requests went to %v, want %v", got, want)
		}
	})
}

func TestPickPrefersTheSoftRTTToAnEvenLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{}, rtts(10*ms, 30*ms), map[string]time.Duration{"a": 5 * ms, "b": 20 * ms})
		tr.rand = draws(0, 1, 1, 0)
		if got, want := tr.hold(10), map[string]int{"a": 10}; !maps.Equal(got, want) {
			t.Fatalf("10 requests in flight went to %v, want %v", got, want)
		}
	})
}

func TestPickNeverUsesAnInstanceWhoseRTTIsUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{}, rtts(10*ms, 30*ms), map[string]time.Duration{"a": 20 * ms})
		tr.publish("a", "c") // c never answers a ping
		if got, want := tr.hold(4), map[string]int{"a": 4}; !maps.Equal(got, want) {
			t.Fatalf("4 requests went to %v, want %v", got, want)
		}
	})
}

func TestWithNoHardRTTAnUnmeasuredInstanceServesRatherThanANewOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{}, rtts(10*ms, 0), map[string]time.Duration{})
		tr.publish("c") // c never answers a ping: an overloaded host loses them
		tr.fplacer.startsAt(tr.fnet, svc, "n", 5*ms)
		if got, want := tr.hold(3), map[string]int{"c": 3}; !maps.Equal(got, want) {
			t.Fatalf("3 requests went to %v, want %v", got, want)
		}
		if got := tr.fplacer.calls(); len(got) != 0 {
			t.Fatalf("placements asked for: %+v, want none", got)
		}
		// Once one is measured, the measured one serves.
		tr.fnet.move("a", 2*ms)
		tr.publish("a", "c")
		synctest.Wait()
		if got, want := tr.hold(2), map[string]int{"a": 2}; !maps.Equal(got, want) {
			t.Fatalf("2 requests went to %v, want %v", got, want)
		}
	})
}

func TestPickStartsAnInstanceWhenNoneIsWithinTheHardRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var outcomes []string
		cfg := Config{OnAllocate: func(service, o string) { outcomes = append(outcomes, service+" "+o) }}
		tr := newTestRouter(t, cfg, rtts(10*ms, 30*ms), map[string]time.Duration{"a": 50 * ms})
		tr.fplacer.startsAt(tr.fnet, svc, "n", 5*ms)
		if got, want := tr.hold(3), map[string]int{"n": 3}; !maps.Equal(got, want) {
			t.Fatalf("3 requests went to %v, want %v", got, want)
		}
		if got, want := tr.fplacer.calls(), []deploy.PlaceOptions{{OnDemand: true}}; !slices.Equal(got, want) {
			t.Fatalf("placements asked for: %+v, want %+v", got, want)
		}
		if want := []string{"svc ok"}; !slices.Equal(outcomes, want) {
			t.Fatalf("OnAllocate told %q, want %q", outcomes, want)
		}
	})
}

func TestConcurrentPicksShareOneAllocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{}, rtts(10*ms, 30*ms), nil)
		release := make(chan struct{})
		tr.fplacer.startsAt(tr.fnet, svc, "n", 5*ms)
		start := tr.fplacer.place
		tr.fplacer.place = func(ctx context.Context, opts deploy.PlaceOptions) (*deploy.Response, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return start(ctx, opts)
		}
		const n = 20
		got := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				tg, err := tr.Pick(t.Context(), svc)
				if err != nil {
					t.Errorf("pick %d: %v", i, err)
					return
				}
				got[i] = tg.Instance.ID
			})
		}
		synctest.Wait() // every request waits for the instance
		if k := len(tr.fplacer.calls()); k != 1 {
			t.Errorf("%d requests waiting asked for %d instances, want 1", n, k)
		}
		close(release)
		wg.Wait()
		for i, name := range got {
			if name != "n" {
				t.Errorf("request %d went to %q, want the new instance", i, name)
			}
		}
	})
}

func TestARefusedAllocationIsErrAllocationWithItsReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var outcomes []string
		cfg := Config{OnAllocate: func(service, o string) { outcomes = append(outcomes, service+" "+o) }}
		tr := newTestRouter(t, cfg, rtts(10*ms, 30*ms), nil)
		_, err := tr.Pick(t.Context(), svc)
		if !errors.Is(err, ErrAllocation) || !strings.Contains(err.Error(), "no node can run service svc") {
			t.Fatalf("got %v, want ErrAllocation with the placer's reason", err)
		}
		if want := []string{"svc refused"}; !slices.Equal(outcomes, want) {
			t.Fatalf("OnAllocate told %q, want %q", outcomes, want)
		}
	})
}

func TestTheBestBetweenSoftAndHardServesNowAndANearerOneReplacesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{UpgradeAfter: 3 * time.Second}, rtts(10*ms, 30*ms), map[string]time.Duration{"a": 20 * ms})
		tr.fplacer.startsAt(tr.fnet, svc, "n", 5*ms)
		for range 2 { // for 2s: a, and nothing asked for yet
			if name, _ := tr.pick(); name != "a" {
				t.Fatalf("got %s, want a", name)
			}
			synctest.Wait()
			if k := len(tr.fplacer.calls()); k != 0 {
				t.Fatalf("a nearer instance was asked for before UpgradeAfter (%d)", k)
			}
			tr.clock.advance(2 * time.Second)
		}
		// 4s: a still serves, and a nearer instance is asked for.
		if name, _ := tr.pick(); name != "a" {
			t.Fatalf("got %s, want a", name)
		}
		synctest.Wait()
		if got, want := tr.fplacer.calls(), []deploy.PlaceOptions{{OnDemand: true, SoftOnly: true}}; !slices.Equal(got, want) {
			t.Fatalf("placements asked for: %+v, want %+v", got, want)
		}
		if got, want := tr.hold(5), map[string]int{"n": 5}; !maps.Equal(got, want) {
			t.Fatalf("once the nearer instance runs, 5 requests went to %v, want %v", got, want)
		}
	})
}

func TestTheRouteDecidesWhichVersionServesAndWhatStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		info := rtts(10*ms, 30*ms)
		info.Version = 2
		tr := newTestRouter(t, Config{}, info, map[string]time.Duration{})
		tr.fnet.place("old", 2*ms)
		tr.fnet.place("new", 2*ms)
		old, fresh := running(svc, "old"), running(svc, "new")
		old.Version, fresh.Version = 1, 2
		tr.watch().set(old, fresh)
		v1 := rtts(10*ms, 30*ms)
		v1.Version = 1
		before := registry.Route{Service: svc, Version: 2, Start: &v1}

		// Before a blue-green switch only the old set serves.
		tr.watch().setRoute(before)
		synctest.Wait()
		if got, want := tr.hold(4), map[string]int{"old": 4}; !maps.Equal(got, want) {
			t.Fatalf("before the switch 4 requests went to %v, want %v", got, want)
		}
		// The switch moves every new request at once.
		tr.watch().setRoute(registry.Route{Service: svc, Version: 2, Switched: true})
		synctest.Wait()
		if got, want := tr.hold(4), map[string]int{"new": 4}; !maps.Equal(got, want) {
			t.Fatalf("after the switch 4 requests went to %v, want %v", got, want)
		}
		// Back before the switch with no old instance left: the one
		// started on demand is of the old definition.
		tr.watch().set(fresh)
		tr.watch().setRoute(before)
		synctest.Wait()
		tr.fplacer.startsAt(tr.fnet, svc, "old2", 2*ms)
		if name, _ := tr.pick(); name != "old2" {
			t.Fatalf("got %s, want the instance started on demand", name)
		}
		tr.fplacer.mu.Lock()
		versions := tr.fplacer.versions
		tr.fplacer.mu.Unlock()
		if !slices.Equal(versions, []int{1}) {
			t.Fatalf("on-demand starts asked for versions %v, want [1] (the route's)", versions)
		}
	})
}

func TestARefusedNearerInstanceIsNotAskedForAgainBeforeTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{UpgradeAfter: 3 * time.Second, UpgradeBackoff: 30 * time.Second}
		tr := newTestRouter(t, cfg, rtts(10*ms, 30*ms), map[string]time.Duration{"a": 20 * ms})
		asked := func(want int) {
			t.Helper()
			synctest.Wait()
			if k := len(tr.fplacer.calls()); k != want {
				t.Fatalf("nearer instances asked for: %d, want %d", k, want)
			}
		}
		tr.pick()
		tr.clock.advance(4 * time.Second)
		tr.pick() // refused: none within the soft RTT
		asked(1)
		tr.pick()
		tr.clock.advance(4 * time.Second)
		tr.pick() // far for 4s again, but within the backoff
		asked(1)
		tr.clock.advance(27 * time.Second)
		tr.pick() // 31s after the refusal
		asked(2)
	})
}

func TestAFailedInstanceIsOutOfRotationForDeadFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{DeadFor: 10 * time.Second}, rtts(10*ms, 30*ms), map[string]time.Duration{"a": 2 * ms, "b": 4 * ms})
		name, tg := tr.pick()
		if name != "a" {
			t.Fatalf("first pick: %s, want a", name)
		}
		tg.Done(false)
		name, tg = tr.pick()
		if name != "a" {
			t.Fatalf("after a request that went well: %s, want a", name)
		}
		tg.Done(true)
		if got, want := tr.hold(4), map[string]int{"b": 4}; !maps.Equal(got, want) {
			t.Fatalf("after a failed: 4 requests went to %v, want %v", got, want)
		}
		tr.clock.advance(10*time.Second + ms)
		if got, want := tr.hold(4), map[string]int{"a": 4}; !maps.Equal(got, want) {
			t.Fatalf("after DeadFor: 4 requests went to %v, want %v", got, want)
		}
	})
}

func TestRegistryAnswersAreUnknownServiceOrRegistryUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{}, rtts(0, 0), nil)
		for i := range 2 { // not remembered: the next request asks again
			if _, err := tr.Pick(t.Context(), "nope"); !errors.Is(err, ErrUnknownService) {
				t.Fatalf("no such service: got %v, want ErrUnknownService", err)
			}
			if gets, _ := tr.freg.calls(); gets != i+1 || tr.Known("nope") {
				t.Fatalf("after %d requests: %d reads, known %v", i+1, gets, tr.Known("nope"))
			}
		}
		tr.freg.fail(fmt.Errorf("get service: %w", registry.ErrInvalid))
		if _, err := tr.Pick(t.Context(), "Bad Name"); !errors.Is(err, ErrUnknownService) {
			t.Fatalf("invalid name: got %v, want ErrUnknownService", err)
		}
		tr.freg.fail(errors.New("no registry-service answered"))
		_, err := tr.Pick(t.Context(), svc)
		if !errors.Is(err, ErrRegistry) || errors.Is(err, ErrUnknownService) {
			t.Fatalf("registry down: got %v, want ErrRegistry", err)
		}
	})
}

func TestAClientModeServiceIsNotServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		info := rtts(0, 0)
		info.ProxyClientMode = true
		tr := newTestRouter(t, Config{}, info, map[string]time.Duration{"a": 2 * ms})
		if _, err := tr.Pick(t.Context(), svc); !errors.Is(err, ErrNotServing) {
			t.Fatalf("got %v, want ErrNotServing", err)
		}
	})
}

func TestAfterCloseTheRouterStartsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{UpgradeAfter: time.Second}, rtts(10*ms, 30*ms), map[string]time.Duration{"a": 2 * ms})
		tr.pick()
		tr.mu.Lock()
		s := tr.services[svc]
		tr.mu.Unlock()
		w := tr.watch()

		tr.Close()
		tr.Close()
		if k := w.closes(); k != 1 {
			t.Fatalf("the watch was closed %d times, want 1", k)
		}
		gets, watches := tr.freg.calls()
		for _, name := range []string{svc, "other"} {
			if _, err := tr.Pick(t.Context(), name); !errors.Is(err, ErrClosed) {
				t.Fatalf("pick %s after Close: got %v, want ErrClosed", name, err)
			}
		}
		if g, w := tr.freg.calls(); g != gets || w != watches {
			t.Fatalf("after Close the registry was read %d more times and %d watches started", g-gets, w-watches)
		}

		// What a request already past the check could still do.
		if err := s.allocate(t.Context(), tr.Router, "test"); !errors.Is(err, ErrClosed) {
			t.Fatalf("allocate after Close: got %v, want ErrClosed", err)
		}
		tr.fnet.move("a", 20*ms) // now between soft and hard, and for long
		s.choose(tr.Router)
		tr.clock.advance(2 * time.Second)
		if tg := s.choose(tr.Router); tg == nil || tg.Instance.ID != "a" {
			t.Fatalf("choose after Close: %v, want a", tg)
		}
		synctest.Wait()
		if k := len(tr.fplacer.calls()); k != 0 {
			t.Fatalf("after Close %d instances were asked for", k)
		}
		s.mu.Lock()
		upgrading := s.upgrading
		s.mu.Unlock()
		if upgrading {
			t.Fatal("after Close an upgrade is marked as running")
		}
	})
}

func TestCloseEndsAPickWaitingForAnInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{}, rtts(10*ms, 30*ms), nil)
		tr.fplacer.place = func(ctx context.Context, opts deploy.PlaceOptions) (*deploy.Response, error) {
			<-ctx.Done() // an allocator that takes its time
			return nil, ctx.Err()
		}
		errc := make(chan error, 1)
		go func() {
			_, err := tr.Pick(t.Context(), svc)
			errc <- err
		}()
		synctest.Wait()
		start := time.Now() // the bubble's clock: it moves only when all wait
		tr.Close()
		if err := <-errc; !errors.Is(err, ErrAllocation) {
			t.Fatalf("got %v, want ErrAllocation", err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("the request ended %s after Close, not at once", d)
		}
	})
}

// Once a service is known, no request waits for the registry: its
// definition is reread in the background (a registry that hangs costs a
// request nothing), the instances known go on serving, and a service the
// reread finds deleted is unknown from then on.
func TestARequestNeverWaitsForTheRegistryOnceTheServiceIsKnown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTestRouter(t, Config{}, rtts(0, 0), map[string]time.Duration{"a": 2 * ms})
		if got, _ := tr.pick(); got != "a" {
			t.Fatalf("first pick: %s", got)
		}
		tr.freg.mu.Lock()
		tr.freg.hang = true
		tr.freg.mu.Unlock()
		tr.clock.advance(infoTTL + time.Second) // the definition is stale
		start := time.Now()                     // the bubble's clock: it moves only when everyone waits
		if got, _ := tr.pick(); got != "a" {
			t.Fatalf("pick while the registry hangs: %s", got)
		}
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("the request waited %s for the registry", waited)
		}
		synctest.Wait() // the reread waits on the registry in the background
		for range 3 {
			tr.pick() // one reread at a time
		}
		if gets, _ := tr.freg.calls(); gets != 2 {
			t.Fatalf("%d reads of the definition, want 2 (set-up, one reread)", gets)
		}

		// The registry answers again: the service was deleted meanwhile.
		tr.freg.mu.Lock()
		tr.freg.hang = false
		delete(tr.freg.infos, svc)
		tr.freg.mu.Unlock()
		time.Sleep(11 * time.Second) // the hung reread gives up (bubble time)
		tr.clock.advance(infoTTL + time.Second)
		tr.pick() // starts the reread that finds it gone
		synctest.Wait()
		if _, err := tr.Pick(t.Context(), svc); !errors.Is(err, ErrUnknownService) {
			t.Fatalf("after the reread found it deleted: %v", err)
		}
	})
}
