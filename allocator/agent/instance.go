package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// instance is one instance this node runs.
type instance struct {
	rt       runtime.Runtime
	ports    ports
	cpu, mem int
	ready    chan struct{} // closed once running, failed or stopped

	mu          sync.Mutex
	rec         registry.Instance
	lastRequest time.Time // last request its proxy served
	inFlight    int
	load        loadWindow // its polls, for the node record's Load
	stopping    bool
	startErr    error
	failedAt    time.Time
	// unpublished: the last put of its record failed (no registry
	// answered); the next heartbeat puts it again, or the registry would
	// show a state the instance has left.
	unpublished bool
}

func (in *instance) record() registry.Instance {
	in.mu.Lock()
	defer in.mu.Unlock()
	r := in.rec
	r.Addrs = append([]string(nil), r.Addrs...)
	if in.ports != (ports{}) {
		r.Ports = &registry.InstancePorts{Service: in.ports.Service, Proxy: in.ports.Proxy, P2P: in.ports.P2P, Metrics: in.ports.Metrics}
	}
	return r
}

func (in *instance) setState(state, msg string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.rec.State, in.rec.Message = state, msg
}

func (in *instance) state() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rec.State
}

// newID makes an instance ID: the service's name and a random suffix,
// within the 63 characters of [a-z0-9-] IDs may have (a service name's
// '.' and '_' become '-').
func newID(service string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	if len(service) > 54 {
		service = service[:54]
	}
	service = strings.NewReplacer(".", "-", "_", "-").Replace(service)
	return fmt.Sprintf("%s-%s", service, hex.EncodeToString(b))
}

// validateID checks an instance ID a deploy request chooses: a name, as
// registry.ValidateName has it, of the characters runtimes accept in an
// ID (it names a container or a process's directory).
func validateID(id string) error {
	if err := registry.ValidateName(id); err != nil {
		return fmt.Errorf("instance ID: %s", strings.TrimPrefix(err.Error(), "invalid service name: "))
	}
	if strings.ContainsAny(id, "._") {
		return fmt.Errorf("instance ID %q: use lower-case letters, digits and '-' (it names a container or a directory)", id)
	}
	return nil
}

// proxyAddrs are the multiaddrs of an instance's proxy: this node's IP
// addresses with the proxy's port.
func (a *Agent) proxyAddrs(p2pPort int, id peer.ID) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range a.node.Host().Addrs() {
		ip, err := m.ValueForProtocol(ma.P_IP4)
		proto := "ip4"
		if err != nil {
			if ip, err = m.ValueForProtocol(ma.P_IP6); err != nil {
				continue
			}
			proto = "ip6"
		}
		s := fmt.Sprintf("/%s/%s/tcp/%d/p2p/%s", proto, ip, p2pPort, id)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// start admits and starts a new instance of service, and returns at once;
// wait on in.ready for the outcome. The caller has checked the service;
// sr.id is the caller's choice of ID, or "" for a new one.
func (a *Agent) start(sr startReq, info *registry.ServiceInfo, rtName string) (*instance, error) {
	service := sr.service
	if sr.id == "" {
		sr.id = newID(service)
	} else if err := a.idFree(sr.id); err != nil {
		return nil, err
	}
	if err := a.failures.check(startKey{service, info.Version}); err != nil {
		a.metrics.refused("start_backoff")
		return nil, err
	}
	if err := a.res.reserve(info.CpuReq, info.MemoryReq); err != nil {
		a.metrics.refused("no_capacity")
		return nil, err
	}
	p, err := a.ports.take()
	if err != nil {
		a.res.release(info.CpuReq, info.MemoryReq)
		return nil, wire.Errorf(wire.CodeRuntimeError, "%v", err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		a.res.release(info.CpuReq, info.MemoryReq)
		a.ports.put(p)
		return nil, err
	}
	pid, _ := peer.IDFromPrivateKey(key)
	id := sr.id
	in := &instance{
		rt: a.runtimes[rtName], ports: p, cpu: info.CpuReq, mem: info.MemoryReq, ready: make(chan struct{}),
		rec: registry.Instance{
			ID: id, Service: service, Node: a.node.ID().String(), State: registry.StatePending, Runtime: rtName,
			PeerID: pid.String(), Addrs: a.proxyAddrs(p.P2P, pid), OnDemand: sr.onDemand, Compute: sr.compute, Host: a.listenIP(),
			Version: info.Version, Started: time.Now().UTC(),
		},
	}
	spec, specErr := a.runtimeSpec(rtName, sr, info, p, key, pid.String())
	if specErr != nil && !errors.Is(specErr, errCommandNotFound) {
		a.res.release(info.CpuReq, info.MemoryReq)
		a.ports.put(p)
		return nil, wire.Errorf(wire.CodeRuntimeError, "%v", specErr)
	}
	if a.admitHook != nil {
		a.admitHook()
	}
	a.mu.Lock()
	if a.closed {
		// Close has listed what to stop: an instance added now would
		// outlive the allocator.
		a.mu.Unlock()
		a.res.release(info.CpuReq, info.MemoryReq)
		a.ports.put(p)
		a.metrics.refused("shutting_down")
		return nil, wire.Errorf(wire.CodeUnavailable, "the allocator is shutting down")
	}
	if a.instances[id] != nil {
		// A deploy with the same chosen ID got here first.
		a.mu.Unlock()
		a.res.release(info.CpuReq, info.MemoryReq)
		a.ports.put(p)
		a.metrics.refused("id_in_use")
		return nil, idInUse(id)
	}
	a.instances[id] = in
	a.mu.Unlock()
	a.metrics.admitted()
	a.publishNow()
	if specErr != nil {
		// A missing command is the service's problem on this node, not
		// a refusal: the instance fails once, visibly, with the reason.
		a.goLoop(func(ctx context.Context) { a.startFailed(ctx, in, specErr) })
		return in, nil
	}
	// respec moves the instance to new ports when one was taken between
	// our pick and its bind.
	respec := func(p ports) (runtime.Spec, []string, error) {
		sp, err := a.runtimeSpec(rtName, sr, info, p, key, pid.String())
		return sp, a.proxyAddrs(p.P2P, pid), err
	}
	a.goLoop(func(ctx context.Context) { a.run(ctx, in, spec, respec) })
	return in, nil
}

// idFree checks that no instance of this node has the ID a deploy chose.
func (a *Agent) idFree(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.instances[id] != nil {
		a.metrics.refused("id_in_use")
		return idInUse(id)
	}
	return nil
}

func idInUse(id string) error {
	return wire.Errorf(wire.CodeConflict, "instance ID %q is in use on this node", id)
}

// run starts the instance, waits for it to be healthy, then supervises
// it until it ends.
func (a *Agent) run(ctx context.Context, in *instance, spec runtime.Spec, respec func(ports) (runtime.Spec, []string, error)) {
	log := a.log.With("instance", spec.ID, "service", in.rec.Service)
	in.setState(registry.StateStarting, "")
	a.putRecord(ctx, in)
	startCtx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	var err error
	started := false // the runtime started something, healthy or not
	for attempt := 1; ; attempt++ {
		_, err = in.rt.Start(startCtx, spec)
		if err == nil {
			started = true
			err = a.waitHealthy(startCtx, in)
		}
		if !errors.Is(err, errPortTaken) || attempt == portAttempts || startCtx.Err() != nil {
			break
		}
		log.Info("a port of the instance was taken before it could bind it; starting it again on other ports", "ports", in.portsNow().String())
		if spec, err = a.movePorts(startCtx, in, respec); err != nil {
			break
		}
	}
	cancel()
	in.mu.Lock()
	stopping := in.stopping
	in.mu.Unlock()
	if stopping {
		// Stopped while starting: stop has released what it held. It may
		// have found nothing to stop if it came before the runtime's
		// Start; stopping again after Start leaves nothing running, even
		// when the wait for health ended with the stop (Close cancels
		// ctx): the runtime's unit runs all the same.
		if started {
			// Not ctx: Close cancels it once it has asked every instance
			// to stop, which may be before this one has started.
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_ = in.rt.Stop(sctx, in.rec.ID, 10*time.Second)
			_ = in.rt.Remove(sctx, in.rec.ID)
			cancel()
		}
		return
	}
	if err != nil {
		a.startFailed(ctx, in, err)
		return
	}
	log.Info("instance running", "runtime", in.rec.Runtime, "peer", in.rec.PeerID, "service_port", in.portsNow().Service)
	a.failures.started(startKey{in.rec.Service, in.rec.Version})
	a.metrics.started()
	a.markRunning(ctx, in)
	a.supervise(ctx, in)
}

// startFailed marks an instance that could not start failed, and backs
// off its service on this node.
func (a *Agent) startFailed(ctx context.Context, in *instance, err error) {
	wait := a.failures.failed(startKey{in.rec.Service, in.rec.Version}, err.Error())
	a.log.Warn("instance failed to start", "instance", in.rec.ID, "service", in.rec.Service, "err", err,
		"backoff", wait)
	a.metrics.failed()
	a.fail(ctx, in, fmt.Sprintf("start: %v", err))
	a.cleanup(in)
}

// portAttempts bounds the starts of an instance whose ports keep being
// taken (by allocators sharing the host, or any program) between the
// allocator's pick and the instance's bind.
const portAttempts = 3

// errPortTaken: the instance could not bind a port of its; run starts it
// again on others.
var errPortTaken = errors.New("a port of the instance is in use by another program")

// portTaken says whether the instance's last output says a port of its
// was in use.
func (a *Agent) portTaken(ctx context.Context, in *instance) bool {
	lt, ok := in.rt.(runtime.LogTailer)
	if !ok {
		return false
	}
	tail, err := lt.Tail(ctx, in.rec.ID, 20)
	return err == nil && strings.Contains(tail, "address already in use")
}

// movePorts removes what is left of a failed start, gives the instance
// new ports and returns the spec to start it with.
func (a *Agent) movePorts(ctx context.Context, in *instance, respec func(ports) (runtime.Spec, []string, error)) (runtime.Spec, error) {
	_ = in.rt.Stop(ctx, in.rec.ID, time.Second)
	if err := in.rt.Remove(ctx, in.rec.ID); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return runtime.Spec{}, fmt.Errorf("remove the failed start: %w", err)
	}
	p, err := a.ports.take()
	if err != nil {
		return runtime.Spec{}, err
	}
	spec, addrs, err := respec(p)
	if err != nil {
		a.ports.put(p)
		return runtime.Spec{}, err
	}
	in.mu.Lock()
	if in.stopping { // stop has released the old ports already
		in.mu.Unlock()
		a.ports.put(p)
		return runtime.Spec{}, errors.New("stopped while starting")
	}
	old := in.ports
	in.ports, in.rec.Addrs = p, addrs
	in.mu.Unlock()
	a.ports.put(old)
	return spec, nil
}

// portsNow returns the instance's ports: run may move them while it
// starts, and stop may read them meanwhile.
func (in *instance) portsNow() ports {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.ports
}

func (a *Agent) markRunning(ctx context.Context, in *instance) {
	in.mu.Lock()
	in.rec.State = registry.StateRunning
	in.lastRequest = time.Now()
	in.mu.Unlock()
	// Answer the deploy first: its caller gets the instance (addresses
	// included) in the answer and needs no record; others see the record
	// a registry write later. Under a burst of deploys, writes queue up
	// and waiting for this one doubled the time to answer.
	select {
	case <-in.ready:
	default:
		close(in.ready)
	}
	a.putRecord(ctx, in)
}

// fail marks an instance failed, removes what the runtime has left of it
// and keeps the failed record (for operators to see) for FailedKeep.
func (a *Agent) fail(ctx context.Context, in *instance, msg string) {
	if lt, ok := in.rt.(runtime.LogTailer); ok {
		if tail, err := lt.Tail(ctx, in.rec.ID, 5); err == nil && tail != "" {
			msg += "; last output: " + strings.Join(strings.Fields(tail), " ")
		}
	}
	in.mu.Lock()
	in.rec.State, in.rec.Message = registry.StateFailed, msg
	in.startErr = errors.New(msg)
	in.failedAt = time.Now()
	in.mu.Unlock()
	_ = in.rt.Stop(ctx, in.rec.ID, 5*time.Second)
	if err := in.rt.Remove(ctx, in.rec.ID); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		a.log.Warn("remove failed instance", "instance", in.rec.ID, "err", err)
	}
	a.putRecord(ctx, in)
	select {
	case <-in.ready:
	default:
		close(in.ready)
	}
}

var statusClient = &http.Client{Timeout: 2 * time.Second}

func (in *instance) status(ctx context.Context) (instenv.Status, error) {
	var st instenv.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://127.0.0.1:"+strconv.Itoa(in.portsNow().Proxy)+instenv.StatusPath, nil)
	if err != nil {
		return st, err
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decode proxy status: %w", err)
	}
	return st, nil
}

// waitHealthy polls the proxy's status until it says the service answers:
// often at first (a process instance is up in milliseconds), then less.
func (a *Agent) waitHealthy(ctx context.Context, in *instance) error {
	wait := 5 * time.Millisecond
	var last error
	for {
		st, err := in.status(ctx)
		if err == nil && st.Ready {
			return nil
		}
		if err == nil {
			err = errors.New("service not answering on its port yet")
		}
		last = err
		if s, ierr := in.rt.Inspect(ctx, in.rec.ID); ierr == nil && s.State == runtime.StateExited {
			if a.portTaken(ctx, in) {
				return errPortTaken
			}
			return fmt.Errorf("exited with code %d before it was healthy", s.ExitCode)
		}
		// Not worth the runtime's restarts: run moves it to other ports.
		// (Checked once a healthy start would have answered, about 35 ms
		// in, so that a normal start reads no logs.)
		if wait >= 40*time.Millisecond && a.portTaken(ctx, in) {
			return errPortTaken
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy within %s: %w", a.cfg.StartTimeout, last)
		case <-time.After(wait):
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// supervise follows a running instance until it ends: polls its proxy for
// idle time and its runtime for restarts, culls it when idle, and marks it
// failed when its runtime gives up on it.
func (a *Agent) supervise(ctx context.Context, in *instance) {
	exited := make(chan runtime.Status, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		st, err := in.rt.Wait(wctx, in.rec.ID)
		if err == nil {
			exited <- st
		}
	}()
	tick := time.NewTicker(a.cfg.StatusEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case st := <-exited:
			in.mu.Lock()
			stopping := in.stopping
			in.mu.Unlock()
			if stopping {
				return
			}
			msg := fmt.Sprintf("exited with code %d after %d restarts", st.ExitCode, st.Restarts)
			a.log.Warn("instance failed", "instance", in.rec.ID, "service", in.rec.Service, "reason", msg)
			a.metrics.failed()
			a.fail(ctx, in, msg)
			a.cleanup(in)
			return
		case <-tick.C:
			if a.poll(ctx, in) {
				a.metrics.culled()
				a.stop(ctx, in, "idle")
				return
			}
		}
	}
}

// poll refreshes what is known of a running instance and reports whether
// it should be culled.
func (a *Agent) poll(ctx context.Context, in *instance) (cull bool) {
	var runStart time.Time
	if s, err := in.rt.Inspect(ctx, in.rec.ID); err == nil {
		runStart = s.StartedAt
		in.mu.Lock()
		changed := s.Restarts != in.rec.Restarts
		in.rec.Restarts = s.Restarts
		if changed {
			in.load.reset() // its counters started again
		}
		in.mu.Unlock()
		if changed {
			a.log.Info("instance restarted", "instance", in.rec.ID, "restarts", s.Restarts)
			a.putRecord(ctx, in)
		}
	}
	st, err := in.status(ctx)
	sample := loadSample{at: time.Now(), requests: st.Requests, inFlight: st.InFlight}
	if m, ok := in.rt.(CPUMeter); ok && err == nil {
		if c, cerr := m.CPUSeconds(ctx, in.rec.ID); cerr == nil {
			sample.cpu, sample.hasCPU = c, true
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if err != nil || in.rec.State != registry.StateRunning {
		return false // restarting, or not ours to judge
	}
	if st.LastRequest.After(in.lastRequest) {
		in.lastRequest = st.LastRequest
	}
	in.inFlight = st.InFlight
	if runStart.Before(sample.at) {
		in.load.seed(runStart)
	}
	in.load.add(sample)
	return in.rec.OnDemand && in.inFlight == 0 && time.Since(in.lastRequest) > a.cfg.IdleTimeout
}

// stop stops and removes an instance and its record.
func (a *Agent) stop(ctx context.Context, in *instance, why string) {
	in.mu.Lock()
	if in.stopping {
		in.mu.Unlock()
		return
	}
	in.stopping = true
	wasFailed := in.rec.State == registry.StateFailed
	in.rec.State = registry.StateStopping
	in.mu.Unlock()
	a.log.Info("stopping instance", "instance", in.rec.ID, "service", in.rec.Service, "reason", why)
	if !wasFailed { // a failed instance's runtime remains are gone already
		a.putRecord(ctx, in)
		if !a.closing.Load() {
			a.drain(ctx, in)
		}
		if err := in.rt.Stop(ctx, in.rec.ID, 10*time.Second); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			a.log.Warn("stop instance", "instance", in.rec.ID, "err", err)
		}
		if err := in.rt.Remove(ctx, in.rec.ID); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			a.log.Warn("remove instance", "instance", in.rec.ID, "err", err)
		}
	}
	if !a.closing.Load() {
		if err := a.reg.DeleteInstance(ctx, in.rec.Service, in.rec.ID); err != nil {
			a.log.Debug("remove instance record", "instance", in.rec.ID, "err", err)
		}
	}
	in.setState(registry.StateStopped, why)
	select {
	case <-in.ready:
	default:
		close(in.ready)
	}
	a.mu.Lock()
	delete(a.instances, in.rec.ID)
	a.mu.Unlock()
	if !wasFailed {
		a.cleanup(in)
	}
	a.publishNow()
}

// drainQuiet is how long a stopping instance must have had no request in
// flight, and none new, before it stops: the proxies drop it from their
// targets once its record says stopping, a few milliseconds after
// putRecord; requests already on their way still arrive meanwhile.
const drainQuiet = 300 * time.Millisecond

// drain waits, up to Config.DrainGrace, until a stopping instance has
// finished the requests it has and gets no new ones, so that stopping it
// fails none. It returns at once if the instance's proxy does not answer.
func (a *Agent) drain(ctx context.Context, in *instance) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.DrainGrace)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := in.status(ctx)
		if err != nil {
			return
		}
		quiet := time.Since(began) >= drainQuiet && st.InFlight == 0 && time.Since(st.LastRequest) >= drainQuiet
		if quiet {
			return
		}
		select {
		case <-ctx.Done():
			a.log.Info("instance still busy after the drain grace; stopping it anyway", "instance", in.rec.ID, "in_flight", st.InFlight, "grace", a.cfg.DrainGrace)
			return
		case <-tick.C:
		}
	}
}

// cleanup returns an instance's resources and ports (once).
func (a *Agent) cleanup(in *instance) {
	a.res.release(in.cpu, in.mem)
	a.ports.put(in.portsNow())
	a.publishNow()
}

// putRecord publishes the instance's record; failures are retried by the
// publish loop, which republishes every record each period.
func (a *Agent) putRecord(ctx context.Context, in *instance) {
	rec := in.record()
	if rec.State == registry.StateStopped || a.closing.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := a.reg.PutInstance(ctx, rec)
	if err != nil {
		a.log.Debug("publish instance record; the next heartbeat tries again", "instance", rec.ID, "err", err)
	}
	in.mu.Lock()
	in.unpublished = err != nil
	in.mu.Unlock()
}

// isUnpublished reports whether the instance's record is to be put again.
func (in *instance) isUnpublished() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.unpublished
}
