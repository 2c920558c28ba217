package registry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry/registrytest"
)

// eventLog collects what an Events call delivers.
type eventLog struct {
	mu  sync.Mutex
	got []registry.Event
}

func (l *eventLog) add(e registry.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, e)
	return nil
}

// ids lists the delivered events' ids, heartbeats left out.
func (l *eventLog) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.got {
		if e.Type != registry.EventHeartbeat {
			out = append(out, e.ID)
		}
	}
	return out
}

func storeRev(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), "/physarum/")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func TestClientEvents(t *testing.T) {
	nodes := p2ptest.Network(t, 2, nil)
	r := registrytest.Start(t, nodes[0])
	c := registrytest.Client(t, nodes[1])
	ctx := t.Context()
	before := storeRev(t, r.Member.Client())
	for _, name := range []string{"a", "b"} {
		if _, err := c.AddService(ctx, name, svc(1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteService(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	var past eventLog
	if err := c.Events(ctx, registry.EventsRequest{Index: before}, past.add); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range past.got[1:] {
		got = append(got, e.Topic+" "+e.Type+" "+e.Key)
	}
	if want := []string{"service created a", "service created b", "service deleted a"}; !slices.Equal(got, want) ||
		past.got[0].Type != registry.EventHeartbeat || past.got[0].Index != before {
		t.Fatalf("got %v (first %+v), want a heartbeat at %d then %v", got, past.got[0], before, want)
	}

	// Following, from now, one topic.
	var live eventLog
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(fctx, registry.EventsRequest{Topics: []string{"service:b"}, Follow: true}, live.add)
	}()
	eventually.True(t, 10*time.Second, "the first heartbeat", func() bool {
		live.mu.Lock()
		defer live.mu.Unlock()
		return len(live.got) > 0
	})
	if _, err := c.AddService(ctx, "c", svc(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteService(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "b deleted", func() bool { return len(live.ids()) == 1 })
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("stopped: %v", err)
	}

	// Refusals: a bad topic (before any stream), a compacted index.
	if err := c.Events(ctx, registry.EventsRequest{Topics: []string{"nope"}}, past.add); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("bad topic: %v", err)
	}
	compactAt := storeRev(t, r.Member.Client())
	if _, err := r.Member.Client().Compact(ctx, compactAt); err != nil {
		t.Fatal(err)
	}
	err := c.Events(ctx, registry.EventsRequest{Index: before}, func(registry.Event) error { return nil })
	if ge, ok := errors.AsType[*registry.GoneError](err); !ok || ge.Oldest != compactAt || wire.CodeOf(err) != wire.CodeGone {
		t.Errorf("compacted index: %v, want gone with oldest %d", err, compactAt)
	}
	// fn's error is returned as it is.
	stopErr := errors.New("enough")
	if err := c.Events(ctx, registry.EventsRequest{Index: compactAt}, func(registry.Event) error { return stopErr }); !errors.Is(err, stopErr) {
		t.Errorf("fn's error: %v", err)
	}
}

// A following reader whose registry-service stops goes on from another,
// right after the last event it delivered: nothing lost, nothing twice.
func TestClientEventsResumeOnAnotherRegistry(t *testing.T) {
	nodes := p2ptest.Network(t, 3, nil)
	first := registrytest.Start(t, nodes[0])
	second := registrytest.Serve(t, nodes[1], first.Member)
	c := registrytest.Client(t, nodes[2])
	ctx := t.Context()
	eventually.Succeeds(t, 10*time.Second, func() error {
		if n := len(registry.Candidates(c)); n < 2 {
			return fmt.Errorf("%d registries known", n)
		}
		return nil
	})
	before := storeRev(t, first.Member.Client())
	var live eventLog
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- c.Events(fctx, registry.EventsRequest{Index: before, Follow: true}, live.add) }()
	add := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := c.AddService(ctx, fmt.Sprintf("s%d", i), svc(1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(0, 5)
	eventually.True(t, 10*time.Second, "5 events", func() bool { return len(live.ids()) == 5 })
	// The stream is on the client's first candidate: stop that one.
	if registry.Candidates(c)[0] == nodes[0].ID() {
		first.Server.Close()
	} else {
		second.Close()
	}
	add(5, 10)
	eventually.True(t, 20*time.Second, "10 events", func() bool { return len(live.ids()) >= 10 })
	var all eventLog
	if err := c.Events(ctx, registry.EventsRequest{Index: before}, all.add); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(live.ids(), all.ids()) {
		t.Errorf("across the stop: %v, want %v", live.ids(), all.ids())
	}
	stop()
	<-done
}
