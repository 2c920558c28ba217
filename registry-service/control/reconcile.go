package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/allocator/placement"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// Deployer starts and stops instances on allocators. hostDeployer
// implements it over libp2p; both calls return when ctx ends.
type Deployer interface {
	// Deploy asks allocator n to start an instance as r says and waits
	// until it runs; refusals are *wire.Error.
	Deploy(ctx context.Context, n registry.Node, r deploy.Request) (*registry.Instance, error)
	// Stop asks allocator n to stop instance id.
	Stop(ctx context.Context, n registry.Node, id string) error
}

// ConnectorClient speaks seed 001's connector protocol to an external
// compute. httpConnector implements it.
type ConnectorClient interface {
	Scale(ctx context.Context, baseURL, service string, number int) error
	Status(ctx context.Context, baseURL, service string) (running int, err error)
}

// ReconcilerConfig configures a Reconciler. Zero values take defaults.
type ReconcilerConfig struct {
	// Name identifies this registry-service in the election.
	Name string
	// Resync is the period of the full pass that backs the watches up
	// (default 10s).
	Resync time.Duration
	// Debounce gathers a burst of changes into one pass (default 25ms).
	Debounce time.Duration
	// ElectionTTL is the leader's lease in seconds: a dead leader is
	// replaced within about this long (default 3).
	ElectionTTL int
	// BackoffMin and BackoffMax bound the wait after start failures of
	// one (service, compute), doubling per failure (default 2s, 5m).
	BackoffMin, BackoffMax time.Duration
	// MaxStarts bounds the starts in flight at once (default 16).
	MaxStarts int
	// ConnectorTimeout bounds one call to an external connector
	// (default 5s).
	ConnectorTimeout time.Duration
	// PrometheusURL is the Prometheus server that autoscaling policies'
	// prometheus checks query ("": such checks have no value).
	PrometheusURL string
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

func (c *ReconcilerConfig) defaults() {
	if c.Resync <= 0 {
		c.Resync = 10 * time.Second
	}
	if c.Debounce <= 0 {
		c.Debounce = 25 * time.Millisecond
	}
	if c.ElectionTTL <= 0 {
		c.ElectionTTL = 3
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 2 * time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.MaxStarts <= 0 {
		c.MaxStarts = 16
	}
	if c.ConnectorTimeout <= 0 {
		c.ConnectorTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// forgetFailuresAfter is how long without a failure before a (service,
// compute)'s failure count starts again from zero.
const forgetFailuresAfter = 10 * time.Minute

// Reconciler keeps, while its registry-service leads, the desired count
// of pinned instances running on each compute: it starts the missing
// (placed with section 6's rules within the compute), replaces the failed
// and lost, and stops the surplus, newest first. On-demand instances and
// those of explicit deploys are never its to count or stop.
type Reconciler struct {
	ctl     *Control
	cli     *clientv3.Client
	dep     Deployer
	conn    ConnectorClient
	cfg     ReconcilerConfig
	log     *slog.Logger
	metrics *reconcileMetrics

	kick chan struct{}
	wg   sync.WaitGroup // starts and stops in flight

	mu        sync.Mutex
	starts    map[string]start    // instance ID → its start, while its deploy runs
	stopping  map[string]bool     // instance IDs asked to stop
	launching map[string]bool     // launched instances being placed
	counted   map[string]bool     // failed instance IDs already counted
	states    map[pair]keyState   // what the reconciler knows, as it should be stored
	written   map[pair]keyState   // what is stored
	sent      map[pair]sentNumber // connector scales sent
	// rolloutWake is when a running rollout next needs a pass (zero:
	// none does).
	rolloutWake time.Time
}

// start is a start in flight: of a pair, from a version of the service's
// definition.
type start struct {
	pair
	version int
}

// sentNumber is the last count sent to an external connector.
type sentNumber struct {
	number int
	at     time.Time
}

// NewReconcilerWith is NewReconciler with the allocators and connectors
// reached through dep and conn.
func NewReconcilerWith(ctl *Control, cli *clientv3.Client, dep Deployer, conn ConnectorClient, cfg ReconcilerConfig) *Reconciler {
	cfg.defaults()
	return &Reconciler{
		ctl: ctl, cli: cli, dep: dep, conn: conn, cfg: cfg, log: cfg.Logger,
		metrics: newReconcileMetrics(cfg.Registerer),
		kick:    make(chan struct{}, 1),
		starts:  map[string]start{}, stopping: map[string]bool{}, counted: map[string]bool{}, launching: map[string]bool{},
		states: map[pair]keyState{}, written: map[pair]keyState{}, sent: map[pair]sentNumber{},
	}
}

// trigger asks for a pass soon.
func (r *Reconciler) trigger() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// snapshot is what one pass reads.
type snapshot struct {
	services map[string]registry.ServiceInfo
	desired  map[pair]registry.Desired
	computes map[string]storedCompute
	nodes    []registry.Node
	pinned   map[pair][]registry.Instance
	perNode  map[string]map[string]int // service → node → instances
	launched map[string]launchedRecord
	byID     map[string]registry.Instance
	rollouts map[string]storedRollout
}

func (r *Reconciler) read(ctx context.Context) (*snapshot, error) {
	s := &snapshot{pinned: map[pair][]registry.Instance{}, perNode: map[string]map[string]int{}, byID: map[string]registry.Instance{}}
	var err error
	if s.services, err = r.ctl.recs.ListServices(ctx); err != nil {
		return nil, err
	}
	if s.desired, err = listDesired(ctx, r.ctl.cli, ""); err != nil {
		return nil, err
	}
	if s.computes, err = listOperatorComputes(ctx, r.ctl.cli); err != nil {
		return nil, err
	}
	if s.nodes, err = r.ctl.recs.ListNodes(ctx); err != nil {
		return nil, err
	}
	insts, _, err := r.ctl.recs.ListInstances(ctx, "")
	if err != nil {
		return nil, err
	}
	if s.launched, err = listLaunched(ctx, r.ctl.cli); err != nil {
		return nil, err
	}
	if s.rollouts, err = listRollouts(ctx, r.ctl.cli); err != nil {
		return nil, err
	}
	for _, in := range insts {
		s.byID[in.ID] = in
		if s.perNode[in.Service] == nil {
			s.perNode[in.Service] = map[string]int{}
		}
		s.perNode[in.Service][in.Node]++
		if !in.OnDemand && in.Compute != "" {
			p := pair{in.Service, in.Compute}
			s.pinned[p] = append(s.pinned[p], in)
		}
	}
	return s, nil
}

// Pass compares desired with actual once and acts. It returns the number
// of actions it took (starts, stops, connector calls); a second pass
// right after a first that converged takes none.
func (r *Reconciler) Pass(ctx context.Context) (int, error) {
	start := time.Now()
	s, err := r.read(ctx)
	if err != nil {
		r.metrics.pass("error", time.Since(start))
		return 0, err
	}
	keys := r.keys(s)
	actions := 0
	budget := r.cfg.MaxStarts - r.inflight()
	for _, p := range keys {
		n, used := r.reconcile(ctx, s, p, budget)
		actions += n
		budget -= used
	}
	actions += r.reconcileLaunched(ctx, s)
	r.finishRollouts(ctx, s)
	r.prune(s)
	r.metrics.services(s)
	if err := r.persist(ctx, keys); err != nil {
		r.metrics.pass("error", time.Since(start))
		return actions, err
	}
	r.metrics.pass("ok", time.Since(start))
	return actions, nil
}

// prune forgets the failed instances counted whose records are gone.
func (r *Reconciler) prune(s *snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.counted {
		if _, ok := s.byID[id]; !ok {
			delete(r.counted, id)
		}
	}
}

// keys are the pairs to look at: desired, with pinned instances, with
// starts in flight, or with a state to finish (a connector to scale to 0).
func (r *Reconciler) keys(s *snapshot) []pair {
	set := map[pair]bool{}
	for p := range s.desired {
		set[p] = true
	}
	for p := range s.pinned {
		set[p] = true
	}
	r.mu.Lock()
	for _, st := range r.starts {
		set[st.pair] = true
	}
	for p, st := range r.states {
		if st.ConnectorRunning > 0 {
			set[p] = true
		}
	}
	r.mu.Unlock()
	out := make([]pair, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// want is the desired count of p: 0 once its service is gone.
func (s *snapshot) want(p pair) int {
	if _, ok := s.services[p.service]; !ok {
		return 0
	}
	return s.desired[p].Number
}

// selector resolves a compute; a message says why it cannot be.
func (s *snapshot) selector(compute string) (registry.Selector, string) {
	if oc, ok := s.computes[compute]; ok {
		sel, err := registry.ParseConnector(oc.Connector)
		if err != nil {
			return sel, err.Error()
		}
		return sel, ""
	}
	if compute == registry.ComputePhysarum {
		return registry.Selector{Kind: registry.KindNetwork}, ""
	}
	return registry.Selector{Kind: registry.KindNode, Node: compute}, ""
}

// reconcile acts on one pair; it returns the actions taken and the starts
// used from budget.
func (r *Reconciler) reconcile(ctx context.Context, s *snapshot, p pair, budget int) (int, int) {
	want := s.want(p)
	sel, msg := s.selector(p.compute)
	if msg != "" {
		r.setMessage(p, msg)
		return 0, 0
	}
	if sel.Kind == registry.KindConnector {
		return r.reconcileConnector(ctx, p, sel.URL, want), 0
	}
	if ro, ok := s.rollouts[p.service]; ok && ro.State == registry.RolloutRunning {
		return r.rollout(ctx, s, p, ro, sel, budget)
	}
	live, failed := r.classify(s.pinned[p])
	actions := r.replaceFailed(p, failed, s)
	count := len(live) + r.startsOf(p, live)
	switch {
	case count < want:
		n := r.startMissing(p, s, sel, s.services[p.service], min(want-count, max(budget, 0)))
		return actions + n, n
	case count > want && r.startsOf(p, live) == 0:
		return actions + r.stopSurplus(p, live, count-want, s), 0
	}
	if want > 0 && allRunning(live) {
		r.converged(p)
	} else if want == 0 && len(live) == 0 {
		r.setMessage(p, "")
	}
	return actions, 0
}

func allRunning(live []registry.Instance) bool {
	for _, in := range live {
		if in.State != registry.StateRunning {
			return false
		}
	}
	return true
}

// classify splits a pair's pinned instances into live ones (pending,
// starting, running, and not being stopped) and failed ones.
func (r *Reconciler) classify(insts []registry.Instance) (live, failed []registry.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, in := range insts {
		switch {
		case in.State == registry.StateFailed:
			failed = append(failed, in)
		case r.stopping[in.ID]:
		case in.State == registry.StatePending, in.State == registry.StateStarting, in.State == registry.StateRunning:
			live = append(live, in)
		}
	}
	return live, failed
}

// startsOf counts p's starts in flight whose instance is not yet among
// the records.
func (r *Reconciler) startsOf(p pair, live []registry.Instance) int {
	return r.startsWhere(p, live, func(int) bool { return true })
}

// startsWhere counts p's starts in flight of a version that is(v) whose
// instance is not yet among the records.
func (r *Reconciler) startsWhere(p pair, live []registry.Instance, is func(v int) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id, st := range r.starts {
		if st.pair == p && is(st.version) && !slices.ContainsFunc(live, func(in registry.Instance) bool { return in.ID == id }) {
			n++
		}
	}
	return n
}

func (r *Reconciler) inflight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.starts)
}

// replaceFailed counts each failed instance once towards the pair's
// backoff and stops it, so that its node's resources and record go: the
// missing count then starts a replacement.
func (r *Reconciler) replaceFailed(p pair, failed []registry.Instance, s *snapshot) int {
	n := 0
	for _, in := range failed {
		r.mu.Lock()
		seen := r.counted[in.ID] || r.stopping[in.ID]
		r.counted[in.ID] = true
		r.mu.Unlock()
		if seen {
			continue
		}
		r.failure(p, fmt.Sprintf("instance %s failed: %s", in.ID, in.Message))
		r.stop(p, in, s, "failed")
		n++
	}
	return n
}

// startMissing plans n starts of info (a version of p's service's
// definition) within the compute and launches them.
func (r *Reconciler) startMissing(p pair, s *snapshot, sel registry.Selector, info registry.ServiceInfo, n int) int {
	if n <= 0 {
		return 0
	}
	st := r.state(p)
	if now := r.cfg.Now(); now.Before(st.BackoffUntil) {
		r.setMessage(p, fmt.Sprintf("backing off until %s after %d failed starts", st.BackoffUntil.UTC().Format(time.RFC3339), st.Failures))
		return 0
	}
	var cands []placement.Candidate
	for _, nd := range s.nodes {
		if sel.Matches(nd) {
			// No requester: distance does not apply to desired state, so
			// every node counts as near.
			cands = append(cands, placement.Candidate{Node: nd, RTT: 0, RTTKnown: true, Instances: s.perNode[p.service][nd.PeerID]})
		}
	}
	if len(cands) == 0 {
		r.setMessage(p, fmt.Sprintf("no live allocator in compute %s", p.compute))
		return 0
	}
	started := 0
	for range n {
		ranked, err := placement.Rank(placement.Request{Service: p.service, Info: info}, cands)
		if err != nil {
			r.setMessage(p, err.Error())
			break
		}
		// Reserve on the chosen node, so the next start of this pass
		// sees it fuller (node records lag behind admissions).
		best := ranked[0].Node.PeerID
		for i := range cands {
			if cands[i].Node.PeerID == best {
				cands[i].Node.FreeCPU -= info.CpuReq
				cands[i].Node.FreeMemory -= info.MemoryReq
				cands[i].Instances++
				if s.perNode[p.service] == nil {
					s.perNode[p.service] = map[string]int{}
				}
				s.perNode[p.service][best]++
			}
		}
		order := make([]registry.Node, len(ranked))
		for i, rk := range ranked {
			order[i] = rk.Node
		}
		r.launch(start{p, info.Version}, order)
		started++
	}
	return started
}

// newInstanceID names a pinned instance before it exists, so the
// reconciler knows its own starts when their records appear.
func newInstanceID(service string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	// Runtimes refuse '.' and '_' in instance IDs (container names,
	// directories): map them as the allocator does for its own IDs.
	service = strings.NewReplacer(".", "-", "_", "-").Replace(service)
	if len(service) > 54 {
		service = service[:54]
	}
	return service + "-" + hex.EncodeToString(b)
}

// launch starts one instance of st on the first node of order that
// admits it, in the background.
func (r *Reconciler) launch(st start, order []registry.Node) {
	p := st.pair
	id := newInstanceID(p.service)
	r.mu.Lock()
	r.starts[id] = st
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.trigger()
		ctx, cancel := context.WithTimeout(context.Background(), deploy.DefaultTimeout+5*time.Second)
		defer cancel()
		n, err := r.deployFirst(ctx, order, deploy.Request{Op: deploy.OpDeploy, Service: p.service, ID: id, Compute: p.compute, Version: st.version})
		r.mu.Lock()
		delete(r.starts, id)
		r.mu.Unlock()
		if err != nil {
			r.failure(p, err.Error())
			r.metrics.action("start", "failed")
			r.log.Warn("could not start a pinned instance", "service", p.service, "compute", p.compute, "err", err)
			return
		}
		r.metrics.action("start", "ok")
		r.log.Info("pinned instance started", "service", p.service, "compute", p.compute, "id", id, "node", nodeName(n))
	}()
}

// deployFirst starts the instance r describes on the first node of order
// that admits it. A refusal another node may not share (no room, no
// runtime, unreachable) moves on to the next; any other failure (the
// service itself failed to start) ends there: another try waits for the
// backoff.
func (r *Reconciler) deployFirst(ctx context.Context, order []registry.Node, req deploy.Request) (registry.Node, error) {
	var refusals []string
	for _, n := range order {
		_, err := r.dep.Deploy(ctx, n, req)
		if err == nil {
			return n, nil
		}
		if ctx.Err() != nil {
			return registry.Node{}, err
		}
		refusals = append(refusals, fmt.Sprintf("%s: %s", nodeName(n), wire.MessageOf(err)))
		if c := wire.CodeOf(err); c != wire.CodeNoCapacity && c != wire.CodeUnsupported && c != wire.CodeUnavailable && c != "" {
			break
		}
	}
	return registry.Node{}, errors.New(joinMax(refusals, 4))
}

// stopSurplus stops n of p's live instances, newest first.
func (r *Reconciler) stopSurplus(p pair, live []registry.Instance, n int, s *snapshot) int {
	slices.SortFunc(live, func(a, b registry.Instance) int { return b.Started.Compare(a.Started) })
	for _, in := range live[:min(n, len(live))] {
		r.stop(p, in, s, "surplus")
	}
	return min(n, len(live))
}

// stop asks the instance's node to stop it, in the background.
func (r *Reconciler) stop(p pair, in registry.Instance, s *snapshot, why string) {
	var node registry.Node
	for _, n := range s.nodes {
		if n.PeerID == in.Node {
			node = n
		}
	}
	if node.PeerID == "" {
		return // its node is gone: so is the instance, with the node's lease
	}
	r.mu.Lock()
	r.stopping[in.ID] = true
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.trigger()
		ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
		defer cancel()
		err := r.dep.Stop(ctx, node, in.ID)
		r.mu.Lock()
		delete(r.stopping, in.ID)
		r.mu.Unlock()
		if err != nil && wire.CodeOf(err) != wire.CodeNotFound {
			r.metrics.action("stop", "failed")
			r.log.Warn("could not stop a pinned instance", "service", p.service, "id", in.ID, "why", why, "err", err)
			return
		}
		r.metrics.action("stop", "ok")
		r.log.Info("pinned instance stopped", "service", p.service, "compute", p.compute, "id", in.ID, "why", why)
	}()
}

// reconcileConnector drives an external compute: it reads the
// connector's running count and sends the desired one when they differ
// (once per change, again each resync while they still differ).
func (r *Reconciler) reconcileConnector(ctx context.Context, p pair, baseURL string, want int) int {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectorTimeout)
	defer cancel()
	running, err := r.conn.Status(cctx, baseURL, p.service)
	if err != nil {
		r.setMessage(p, fmt.Sprintf("connector %s: %v", baseURL, err))
		return 0
	}
	r.update(p, func(st *keyState) { st.ConnectorRunning, st.Message = running, "" })
	if running == want {
		return 0
	}
	r.mu.Lock()
	last, ok := r.sent[p]
	r.mu.Unlock()
	if ok && last.number == want && r.cfg.Now().Sub(last.at) < r.cfg.Resync {
		return 0 // sent; the connector is on its way
	}
	if err := r.conn.Scale(cctx, baseURL, p.service, want); err != nil {
		r.metrics.action("connector_scale", "failed")
		r.setMessage(p, fmt.Sprintf("connector %s: %v", baseURL, err))
		return 1
	}
	r.mu.Lock()
	r.sent[p] = sentNumber{number: want, at: r.cfg.Now()}
	r.mu.Unlock()
	r.metrics.action("connector_scale", "ok")
	r.log.Info("connector scaled", "service", p.service, "compute", p.compute, "number", want, "was", running)
	return 1
}

// state returns what the reconciler knows about p.
func (r *Reconciler) state(p pair) keyState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.states[p]
}

func (r *Reconciler) update(p pair, fn func(*keyState)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.states[p]
	fn(&st)
	r.states[p] = st
}

func (r *Reconciler) setMessage(p pair, msg string) {
	r.update(p, func(st *keyState) { st.Message = msg })
}

// failure counts a failed start of p and sets its backoff.
func (r *Reconciler) failure(p pair, reason string) {
	now := r.cfg.Now()
	r.update(p, func(st *keyState) {
		if now.Sub(st.LastFailedAt) > forgetFailuresAfter {
			st.Failures = 0
		}
		st.Failures++
		st.LastFailure, st.LastFailedAt = reason, now.UTC()
		st.Message = ""
		if st.Failures == 1 {
			// One failure may be bad luck (an instance that ran fine and
			// crashed, a node that went): replace at once.
			st.BackoffUntil = time.Time{}
			return
		}
		wait := r.cfg.BackoffMin << min(st.Failures-2, 20)
		st.BackoffUntil = now.Add(min(wait, r.cfg.BackoffMax)).UTC()
	})
}

// nextWake is how long until the earliest backoff of a pair ends (0:
// none), so that its pass is not left to the next resync.
func (r *Reconciler) nextWake(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var next time.Duration
	for _, st := range r.states {
		if d := st.BackoffUntil.Sub(now); d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	if d := r.rolloutWake.Sub(now); !r.rolloutWake.IsZero() && (next == 0 || d < next) {
		next = max(d, time.Millisecond)
	}
	return next
}

// converged clears the message of a pair that runs as desired, and its
// failure count once the last failure is old.
func (r *Reconciler) converged(p pair) {
	now := r.cfg.Now()
	r.update(p, func(st *keyState) {
		st.Message = ""
		if st.Failures > 0 && now.Sub(st.LastFailedAt) > forgetFailuresAfter {
			st.Failures, st.BackoffUntil = 0, time.Time{}
		}
	})
}

// persist writes the states that changed and deletes those of pairs no
// longer looked at.
func (r *Reconciler) persist(ctx context.Context, keys []pair) error {
	r.mu.Lock()
	live := map[pair]bool{}
	for _, p := range keys {
		live[p] = true
	}
	var puts []pair
	var dels []pair
	for p, st := range r.states {
		switch {
		case isLaunchPair(p):
			// A launch's backoff is kept in memory only (reconcileLaunched
			// forgets it with the launch).
		case !live[p]:
			dels = append(dels, p)
		case st != r.written[p] || !r.isWritten(p):
			puts = append(puts, p)
		}
	}
	for p := range r.written {
		if !live[p] && !isLaunchPair(p) && !slices.Contains(dels, p) {
			dels = append(dels, p)
		}
	}
	states := map[pair]keyState{}
	for _, p := range puts {
		states[p] = r.states[p]
	}
	r.mu.Unlock()
	for _, p := range puts {
		if states[p] == (keyState{}) && !r.isWrittenLocked(p) {
			continue // nothing to say and nothing stored
		}
		if err := putJSON(ctx, r.ctl.cli, reconcileKey(p.service, p.compute), states[p]); err != nil {
			return err
		}
		r.mu.Lock()
		r.written[p] = states[p]
		r.mu.Unlock()
	}
	for _, p := range dels {
		if _, err := r.ctl.cli.Delete(ctx, reconcileKey(p.service, p.compute)); err != nil {
			return unavailable("delete reconciler state", err)
		}
		r.mu.Lock()
		delete(r.written, p)
		delete(r.states, p)
		delete(r.sent, p)
		r.mu.Unlock()
	}
	return nil
}

// isLaunchPair tells the pairs that stand for a launched instance's
// placement (their compute is "launched:<uuid>").
func isLaunchPair(p pair) bool { return strings.HasPrefix(p.compute, "launched:") }

// isWritten reports whether p's state is stored; r.mu is held.
func (r *Reconciler) isWritten(p pair) bool {
	_, ok := r.written[p]
	return ok
}

func (r *Reconciler) isWrittenLocked(p pair) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isWritten(p)
}

// load reads the stored states, as a new leader starts.
func (r *Reconciler) load(ctx context.Context) error {
	states, err := listStates(ctx, r.ctl.cli, "")
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states, r.written = map[pair]keyState{}, map[pair]keyState{}
	for p, st := range states {
		r.states[p], r.written[p] = st, st
	}
	return nil
}
