package registry

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/physarum-p2p/physarum/common/wire"
)

func TestReachabilityChangesAreLoggedOnceAndExported(t *testing.T) {
	var logs bytes.Buffer
	r := newReachability(slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Unix(1_800_000_000, 0)
	r.now = func() time.Time { return now }
	c := &Client{reach: r}
	reg := prometheus.NewRegistry()
	if err := c.RegisterMetrics(reg, "physarum_test"); err != nil {
		t.Fatal(err)
	}
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	if ok, _ := c.Reachable(); !ok || gauge("physarum_test_registry_reachable") != 1 {
		t.Fatal("a new client assumes the registry answers until it does not")
	}

	// A refusal comes from a registry: it is reached.
	r.observe(&wire.Error{Code: wire.CodeNotFound, Message: "no such service"})
	r.observe(ErrNoRegistry)
	now = now.Add(time.Minute)
	r.observe(errors.Join(ErrNoRegistry, errors.New("dial: connection refused")))
	r.observe(&wire.Error{Code: wire.CodeUnavailable})
	if ok, since := c.Reachable(); ok || !since.Equal(time.Unix(1_800_000_000, 0)) {
		t.Fatalf("after failures: reachable %v since %s", ok, since)
	}
	if got := gauge("physarum_test_registry_reachable"); got != 0 {
		t.Fatalf("reachable gauge %v during the outage", got)
	}
	if got := gauge("physarum_test_registry_unreachable_since_seconds"); got != 1_800_000_000 {
		t.Fatalf("unreachable since %v", got)
	}
	r.observe(nil)
	r.observe(nil)
	if ok, _ := c.Reachable(); !ok || gauge("physarum_test_registry_unreachable_since_seconds") != 0 {
		t.Fatal("a success did not make it reachable again")
	}
	out := logs.String()
	if strings.Count(out, "registry unreachable") != 1 || strings.Count(out, "registry reachable again") != 1 ||
		!strings.Contains(out, "unreachable_for=1m0s") {
		t.Fatalf("want one line per change, with the outage's length; logs:\n%s", out)
	}
}
