package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// runColdStart times the first request to a service that has no instance,
// through a client proxy, to its response: the proxy finds no instance,
// asks an allocator for one, waits until it runs and forwards the request.
// Each run uses a fresh service name (the same hello definition), so the
// proxy knows nothing of it beforehand; its instance is stopped before
// the next run. Process runtime, and Docker with the image already built
// when a daemon answers. Baseline: warm requests to a running instance.
func runColdStart(ctx context.Context, r *run) error {
	n, err := r.s.newNetwork(r, "coldstart", true)
	if err != nil {
		return err
	}
	defer n.close()
	docker := r.s.docker != ""
	rt := r.s.allocRuntime()
	r.sc.Setup = fmt.Sprintf("1 registry-service, 1 allocator (-runtime %s, 4 CPUs), 1 client proxy; each run asks for a "+
		"service name never used before (hello's definition), then stops its instance; %s.", rt, n.timing())
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	if _, err := n.startAllocators(ctx, allocSpec{name: "alloc-1", runtime: rt, cpus: "4", memory: 4096}); err != nil {
		return err
	}
	cp, err := n.startProxy(ctx, "client-proxy")
	if err != nil {
		return err
	}
	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	runs := r.pick(10, 3)
	names := func(prefix string) []string {
		var out []string
		for i := 1; i <= runs; i++ {
			out = append(out, fmt.Sprintf("%s-%d", prefix, i))
		}
		return out
	}
	kinds := []struct {
		kind, prefix, label string
		target              *Target
		anchor              string
	}{
		{"process", "cold-proc", "process runtime", lt(150, "< 150 ms median (process)"), "Nomad (raw_exec) job run to first answer 210 ms"},
		{"docker", "cold-docker", "Docker runtime, image cached", lt(800, "< 0.8 s median (docker)"), "PhysarumSM 2.17 s median (image cached)"},
	}
	hc := newHTTPClient(60 * time.Second)
	defer hc.CloseIdleConnections()
	for _, k := range kinds {
		if k.kind == "docker" && !docker {
			r.notef("Docker runtime not measured: no Docker daemon answers (%v)", r.s.dockerErr)
			continue
		}
		ns := names(k.prefix)
		if k.kind == "process" {
			err = n.addProcessService(ctx, ns[0], 0, 0)
		} else {
			err = n.addDockerService(ctx, ns[0])
		}
		if err == nil {
			err = n.copyService(ctx, ns[0], ns[1:]...)
		}
		if err != nil {
			return fmt.Errorf("register %s services: %w", k.kind, err)
		}
		r.say("%s: %d first requests, each to a fresh service", k.label, runs)
		var cold, warm dist
		for i, name := range ns {
			url := cp.url + "/" + name + "/"
			took, err := do(ctx, hc, http.MethodGet, url, nil)
			if err != nil {
				r.failf("%s, run %d: first request: %v", k.label, i+1, err)
				continue
			}
			cold = append(cold, took)
			ins, err := c.reg.ListInstances(ctx, name)
			if err != nil {
				return err
			}
			for _, in := range ins {
				if in.Runtime != k.kind {
					r.failf("%s: instance %s ran under the %s runtime", k.label, in.ID, in.Runtime)
				}
			}
			if i == 0 { // the baseline: the same instance, warm
				for range r.pick(100, 30) {
					t, err := do(ctx, hc, http.MethodGet, url, nil)
					if err != nil {
						return fmt.Errorf("warm request: %w", err)
					}
					warm = append(warm, t)
				}
			}
			for j := range ins {
				if err := c.stopInstance(ctx, &ins[j]); err != nil {
					r.failf("stop %s: %v", ins[j].ID, err)
				}
			}
		}
		if len(cold) == 0 {
			continue
		}
		base := &Baseline{Name: "warm request p50", Value: msec(warm.p50()), Unit: "ms"}
		r.fig(Figure{Name: "first request, no instance, " + k.label + ", p50", Value: msec(cold.p50()), Unit: "ms",
			Samples: len(cold), Target: k.target, Baseline: base, Anchor: k.anchor})
		r.fig(Figure{Name: "first request, no instance, " + k.label + ", max", Value: msec(cold.at(100)), Unit: "ms",
			Samples: len(cold), Baseline: base})
	}
	r.notef("Time from sending the GET to the client proxy until its whole response arrived, measured by this process; " +
		"it includes the registry lookups, placement, the allocator starting the instance (proxy + hello) and waiting until it is healthy, " +
		"and the first forwarded request.")
	return nil
}
