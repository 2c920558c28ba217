package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// FailedKeep is how long a failed instance's record stays visible.
const FailedKeep = 10 * time.Minute

// Pinger is what a runtime offers when it can lose its backend (Docker's
// daemon): the agent checks it each period and stops offering the runtime
// while it fails.
type Pinger interface {
	Ping(ctx context.Context) error
}

// publishLoop keeps the node record, and every instance record, alive
// under the node's lease: every third of the lease, and at once when
// something changed. The record's Load is measured afresh each time, and
// its RTTs are the RTT loop's latest, but a change of load or RTT alone
// never publishes early: it waits for the next heartbeat.
func (a *Agent) publishLoop(ctx context.Context) {
	every := a.cfg.LeaseTTL / 3
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			a.checkRuntimes(ctx)
			a.expireFailed()
		case <-a.kick:
		}
		a.publish(ctx)
		// Spread heartbeats: nodes started together must not beat together.
		timer.Reset(every - every/10 + time.Duration(rand.Int64N(int64(every/5)+1)))
	}
}

// ErrNameTaken: another live node holds the allocator's name (the
// registry refused its node record with a conflict).
var ErrNameTaken = errors.New("allocator name taken")

// nameTakenError is the registry's refusal of a name, which says which
// node holds it and what to do: shown as it is.
type nameTakenError struct{ refusal *wire.Error }

func (e *nameTakenError) Error() string   { return e.refusal.Message }
func (e *nameTakenError) Unwrap() []error { return []error{ErrNameTaken, e.refusal} }

// firstPublish publishes the node record once, at start. A registry that
// cannot be reached is no reason not to start (the publish loop tries
// again); a name another live node holds is, since the registry will
// refuse every record of this node until it has a name of its own.
func (a *Agent) firstPublish(ctx context.Context) error {
	_, err := a.putNode(ctx)
	var we *wire.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &we) && we.Code == wire.CodeConflict:
		return &nameTakenError{refusal: we}
	default:
		a.log.Warn("publish node record", "err", err)
		return nil
	}
}

// putNode publishes the node record once.
func (a *Agent) putNode(ctx context.Context) (granted bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.LeaseTTL/3)
	defer cancel()
	return a.reg.PutNode(ctx, a.nodeRecord(), int(a.cfg.LeaseTTL/time.Second))
}

func (a *Agent) publish(ctx context.Context) {
	granted, err := a.putNode(ctx)
	if err != nil {
		if wire.CodeOf(err) == wire.CodeConflict {
			a.log.Error("node record refused: another live node has this allocator's name; restart it with a -name of its own", "name", a.cfg.Name, "err", err)
			return
		}
		a.log.Warn("publish node record", "err", err)
		return
	}
	a.metrics.observeResources(a)
	// Instance records are written as they change. With a new lease, the
	// records of the old one (ours, after a registry outage or at start)
	// are gone: put them all back; else put back those whose last put
	// failed.
	a.mu.Lock()
	insts := a.snapshot()
	a.mu.Unlock()
	for _, in := range insts {
		if granted || in.isUnpublished() {
			a.putRecord(ctx, in)
		}
	}
}

// nodeRecord is this node's registry record now.
func (a *Agent) nodeRecord() registry.Node {
	freeCPU, freeMem := a.res.free()
	cpu, mem := a.res.capacity()
	var addrs []string
	for _, m := range a.node.Host().Addrs() {
		addrs = append(addrs, m.String())
	}
	a.mu.Lock()
	count := len(a.instances)
	var notes []string
	for _, name := range a.order {
		if why := a.degraded[name]; why != "" {
			notes = append(notes, name+" unavailable: "+why)
		}
	}
	a.mu.Unlock()
	now := time.Now()
	return registry.Node{
		PeerID: a.node.ID().String(), Name: a.cfg.Name, Addrs: addrs, Runtimes: a.Runtimes(), Labels: a.cfg.Labels,
		CPU: cpu, Memory: mem, FreeCPU: max(freeCPU, 0), FreeMemory: max(freeMem, 0),
		Instances: count, Updated: now.UTC(), Message: strings.Join(notes, "; "),
		Images: a.images(), Load: a.nodeLoad(now), RTTs: a.nodeRTTs(),
	}
}

// images are the service images held, when the node offers Docker.
func (a *Agent) images() []string {
	if a.cfg.Images == nil || !slices.Contains(a.Runtimes(), registry.RuntimeDocker) {
		return nil
	}
	return a.cfg.Images()
}

// checkRuntimes pings runtimes that can lose their backend and records
// which are unusable.
func (a *Agent) checkRuntimes(ctx context.Context) {
	for _, name := range a.order {
		p, ok := a.runtimes[name].(Pinger)
		if !ok {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.Ping(pctx)
		cancel()
		a.mu.Lock()
		was := a.degraded[name]
		if err != nil {
			a.degraded[name] = err.Error()
		} else {
			delete(a.degraded, name)
		}
		a.mu.Unlock()
		switch {
		case err != nil && was == "":
			a.log.Warn("runtime unavailable; not offering it", "runtime", name, "err", err)
			a.metrics.runtimeUp(name, false)
		case err == nil && was != "":
			a.log.Info("runtime available again", "runtime", name)
			a.metrics.runtimeUp(name, true)
		}
	}
}

// expireFailed forgets failed instances after FailedKeep.
func (a *Agent) expireFailed() {
	a.mu.Lock()
	var old []*instance
	for id, in := range a.instances {
		in.mu.Lock()
		if in.rec.State == registry.StateFailed && time.Since(in.failedAt) > FailedKeep {
			old = append(old, in)
			delete(a.instances, id)
		}
		in.mu.Unlock()
	}
	a.mu.Unlock()
	for _, in := range old {
		ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		_ = a.reg.DeleteInstance(ctx, in.rec.Service, in.rec.ID)
		cancel()
	}
}
