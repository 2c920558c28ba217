package agent

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/registry"
)

// adopt finds the instances a previous run of this allocator started
// (runtime labels, pid files) and manages them again: running ones are
// supervised as if started now, exited ones are removed. Nothing is left
// orphaned and nothing is started twice.
func (a *Agent) adopt(ctx context.Context) error {
	for _, name := range a.order {
		rt := a.runtimes[name]
		list, err := rt.List(ctx)
		if err != nil {
			return fmt.Errorf("list %s instances to adopt: %w", name, err)
		}
		for _, st := range list {
			a.adoptOne(ctx, rt, st)
		}
	}
	return nil
}

func (a *Agent) adoptOne(ctx context.Context, rt runtime.Runtime, st runtime.Status) {
	log := a.log.With("instance", st.ID, "runtime", rt.Name())
	in, err := a.fromLabels(rt, st)
	if err != nil || st.State != runtime.StateRunning {
		log.Info("removing an instance left from a previous run", "state", st.State, "err", err)
		_ = rt.Stop(ctx, st.ID, 5*time.Second)
		if err := rt.Remove(ctx, st.ID); err != nil {
			log.Warn("remove leftover instance", "err", err)
		}
		return
	}
	a.res.force(in.cpu, in.mem)
	a.ports.hold(in.ports)
	a.mu.Lock()
	a.instances[st.ID] = in
	a.mu.Unlock()
	log.Info("adopted instance", "service", in.rec.Service)
	a.metrics.adopted()
	a.goLoop(func(ctx context.Context) {
		// It ran before we did: wait for it to answer again, then
		// supervise it like any other.
		sctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
		err := a.waitHealthy(sctx, in)
		cancel()
		if err != nil {
			a.fail(ctx, in, fmt.Sprintf("adopted but unhealthy: %v", err))
			a.cleanup(in)
			return
		}
		a.markRunning(ctx, in)
		a.supervise(ctx, in)
	})
}

// fromLabels rebuilds an instance from what its runtime kept.
func (a *Agent) fromLabels(rt runtime.Runtime, st runtime.Status) (*instance, error) {
	l := st.Labels
	service := l[runtime.LabelService]
	if err := registry.ValidateName(service); err != nil {
		return nil, err
	}
	p, err := parsePorts(l[labelPorts])
	if err != nil {
		return nil, err
	}
	cpu, err1 := strconv.Atoi(l[labelCPU])
	mem, err2 := strconv.Atoi(l[labelMemory])
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("cpu/memory labels %q/%q", l[labelCPU], l[labelMemory])
	}
	peerID := l[labelPeer]
	if peerID == "" {
		return nil, fmt.Errorf("no %s label", labelPeer)
	}
	started, _ := time.Parse(time.RFC3339Nano, l[labelStarted])
	// No version label: started before versions, or from a definition
	// without one; the version is unknown (0), not a reason to stop it.
	version, _ := strconv.Atoi(l[labelVersion])
	in := &instance{
		rt: rt, ports: p, cpu: cpu, mem: mem, ready: make(chan struct{}),
		rec: registry.Instance{
			ID: st.ID, Service: service, Node: a.node.ID().String(), State: registry.StateStarting,
			Runtime: rt.Name(), PeerID: peerID, OnDemand: l[labelOnDemand] == "true", Compute: l[labelCompute], Started: started, Host: a.listenIP(),
			Restarts: st.Restarts, Version: max(version, 0),
		},
	}
	pid, err := peerIDFromString(peerID)
	if err != nil {
		return nil, err
	}
	in.rec.Addrs = a.proxyAddrs(p.P2P, pid)
	return in, nil
}
