package control

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/allocator/placement"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// The instance lifecycle (seed 003). A launched instance is a record at
// PrefixLaunched+uuid saying what the caller wants (running or stopped)
// and where it was placed; the instance itself is an ordinary pinned
// instance whose ID is the UUID, outside every desired count (its Compute
// is empty). The leader's reconciler places pending launches and notices
// lost ones; actions (stop, start, reboot) are carried out at once by the
// registry-service that receives them, so their answer says what
// happened.

// launchedRecord is a launched instance as stored.
type launchedRecord struct {
	UUID     string    `json:"uuid"`
	Service  string    `json:"service"`
	Compute  string    `json:"compute"`
	Want     string    `json:"want"`
	Node     string    `json:"node,omitempty"`
	NodeID   string    `json:"node_id,omitempty"`
	State    string    `json:"state"`
	Message  string    `json:"message,omitempty"`
	Restarts int       `json:"restarts"`
	Callback string    `json:"callback,omitempty"`
	Created  time.Time `json:"created"`
	SetBy    string    `json:"set_by,omitempty"`
}

// What a launched instance may want.
const (
	wantRunning = "running"
	wantStopped = "stopped"
)

var _ registry.Lifecycle = (*Control)(nil)

// SetDeployer gives Control the way to act on allocators, for the
// lifecycle's actions (registry-service sets its libp2p host's).
func (c *Control) SetDeployer(d Deployer) { c.dep = d }

// Launch records a pinned instance of a service as wanted, and answers at
// once with its UUID and state pending; the reconciler places it.
func (c *Control) Launch(ctx context.Context, r registry.LaunchRequest) (registry.LaunchedInstance, error) {
	if err := registry.ValidateName(r.Service); err != nil {
		return registry.LaunchedInstance{}, badRequest(err)
	}
	id, err := launchUUID(r.UUID)
	if err != nil {
		return registry.LaunchedInstance{}, badRequest(err)
	}
	if r.Callback != "" {
		if err := registry.ValidateCallbackURL(r.Callback); err != nil {
			return registry.LaunchedInstance{}, badRequest(err)
		}
	}
	if r.Compute == "" {
		r.Compute = registry.ComputePhysarum
	}
	if _, err := c.recs.GetService(ctx, r.Service); err != nil {
		return registry.LaunchedInstance{}, err
	}
	ci, err := c.GetCompute(ctx, r.Compute)
	if err != nil {
		return registry.LaunchedInstance{}, err
	}
	if ci.Kind == registry.KindConnector {
		return registry.LaunchedInstance{}, wire.Errorf(wire.CodeBadRequest, "compute %s is an external connector: instances launched by UUID run on Physarum's own nodes", r.Compute)
	}
	rec := launchedRecord{UUID: id, Service: r.Service, Compute: r.Compute, Want: wantRunning, State: registry.StatePending}
	rec.Created, rec.SetBy = c.cfg.Now().UTC(), registry.CallerOf(ctx)
	// The callback first: it is to hear of the launch itself.
	var cb registry.Callback
	if r.Callback != "" {
		if cb, err = c.AddCallback(ctx, registry.Callback{URL: r.Callback, Instance: id}); err != nil {
			return registry.LaunchedInstance{}, err
		}
		rec.Callback = cb.ID
	}
	b, _ := json.Marshal(rec)
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(PrefixLaunched+id), "=", 0)).
		Then(clientv3.OpPut(PrefixLaunched+id, string(b))).Commit()
	if err == nil && !resp.Succeeded {
		err = wire.Errorf(wire.CodeConflict, "an instance with UUID %s exists", id)
	} else if err != nil {
		err = unavailable("record the launch", err)
	}
	if err != nil {
		if cb.ID != "" {
			_, _ = c.DeleteCallback(context.WithoutCancel(ctx), cb.ID)
		}
		return registry.LaunchedInstance{}, err
	}
	c.log.Info("instance launched", "uuid", id, "service", r.Service, "compute", r.Compute, "by", rec.SetBy)
	v := rec.view(nil, "")
	v.Callback, v.CallbackSecret = cb.ID, cb.Secret
	return v, nil
}

// launchUUID normalizes the caller's UUID or makes a version 4 one.
func launchUUID(s string) (string, error) {
	if s != "" {
		return registry.NormalizeUUID(s)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// view is what the API shows: the record, with the live instance's state,
// addresses and start when there is one.
func (r launchedRecord) view(live *registry.Instance, nodeName string) registry.LaunchedInstance {
	v := registry.LaunchedInstance{
		UUID: r.UUID, Service: r.Service, Compute: r.Compute, State: r.State, Want: r.Want,
		Node: r.Node, NodeID: r.NodeID, Restarts: r.Restarts, Message: r.Message, Callback: r.Callback,
		Created: r.Created, SetBy: r.SetBy,
	}
	if live != nil {
		v.State, v.Started, v.NodeID, v.Version = live.State, live.Started, live.Node, live.Version
		v.Restarts += live.Restarts
		v.Addrs = registry.InstanceAddrs{PeerID: live.PeerID, Multiaddrs: live.Addrs, Host: live.Host, Ports: live.Ports}
		if live.Message != "" {
			v.Message = live.Message
		}
		if nodeName != "" {
			v.Node = nodeName
		}
	}
	return v
}

// readLaunched reads one record and its revision.
func (c *Control) readLaunched(ctx context.Context, id string) (launchedRecord, int64, error) {
	var rec launchedRecord
	resp, err := c.cli.Get(ctx, PrefixLaunched+id)
	if err != nil {
		return rec, 0, unavailable("read launched instance", err)
	}
	if len(resp.Kvs) == 0 {
		return rec, 0, wire.Errorf(wire.CodeNotFound, "no launched instance %s", id)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return rec, 0, fmt.Errorf("decode launched instance %s: %w", id, err)
	}
	return rec, resp.Kvs[0].ModRevision, nil
}

// updateLaunched changes a record with fn, retrying when another writer
// changed it meanwhile; fn returning an error leaves it as it was.
func (c *Control) updateLaunched(ctx context.Context, id string, fn func(*launchedRecord) error) (launchedRecord, error) {
	for range 10 {
		rec, rev, err := c.readLaunched(ctx, id)
		if err != nil {
			return rec, err
		}
		if err := fn(&rec); err != nil {
			return rec, err
		}
		b, _ := json.Marshal(rec)
		resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(PrefixLaunched+id), "=", rev)).
			Then(clientv3.OpPut(PrefixLaunched+id, string(b))).Commit()
		if err != nil {
			return rec, unavailable("update launched instance", err)
		}
		if resp.Succeeded {
			return rec, nil
		}
	}
	return launchedRecord{}, wire.Errorf(wire.CodeConflict, "launched instance %s kept changing; try again", id)
}

// listLaunched reads every launched record, by UUID.
func listLaunched(ctx context.Context, cli *clientv3.Client) (map[string]launchedRecord, error) {
	resp, err := cli.Get(ctx, PrefixLaunched, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("list launched instances", err)
	}
	out := make(map[string]launchedRecord, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec launchedRecord
		if json.Unmarshal(kv.Value, &rec) == nil && rec.UUID != "" {
			out[rec.UUID] = rec
		}
	}
	return out, nil
}

// live finds the instance record of a launched instance.
func (c *Control) live(ctx context.Context, rec launchedRecord) (*registry.Instance, error) {
	insts, _, err := c.recs.ListInstances(ctx, rec.Service)
	if err != nil {
		return nil, err
	}
	for _, in := range insts {
		if in.ID == rec.UUID {
			return &in, nil
		}
	}
	return nil, nil
}

func (c *Control) nodeNames(ctx context.Context) (map[string]registry.Node, error) {
	nodes, err := c.recs.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]registry.Node, len(nodes))
	for _, n := range nodes {
		out[n.PeerID] = n
	}
	return out, nil
}

// GetLaunched reads one launched instance.
func (c *Control) GetLaunched(ctx context.Context, id string) (registry.LaunchedInstance, error) {
	id, err := registry.NormalizeUUID(id)
	if err != nil {
		return registry.LaunchedInstance{}, badRequest(err)
	}
	rec, _, err := c.readLaunched(ctx, id)
	if err != nil {
		return registry.LaunchedInstance{}, err
	}
	in, err := c.live(ctx, rec)
	if err != nil {
		return registry.LaunchedInstance{}, err
	}
	nodes, err := c.nodeNames(ctx)
	if err != nil {
		return registry.LaunchedInstance{}, err
	}
	name := ""
	if in != nil {
		name = nodes[in.Node].Name
	}
	return rec.view(in, name), nil
}

// ListLaunched lists the launched instances of a service ("" for all).
func (c *Control) ListLaunched(ctx context.Context, service string) ([]registry.LaunchedInstance, error) {
	if service != "" {
		if err := registry.ValidateName(service); err != nil {
			return nil, badRequest(err)
		}
	}
	recs, err := listLaunched(ctx, c.cli)
	if err != nil {
		return nil, err
	}
	insts, _, err := c.recs.ListInstances(ctx, service)
	if err != nil {
		return nil, err
	}
	nodes, err := c.nodeNames(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]registry.Instance{}
	for _, in := range insts {
		byID[in.ID] = in
	}
	out := []registry.LaunchedInstance{}
	for _, rec := range recs {
		if service != "" && rec.Service != service {
			continue
		}
		if in, ok := byID[rec.UUID]; ok {
			out = append(out, rec.view(&in, nodes[in.Node].Name))
		} else {
			out = append(out, rec.view(nil, ""))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Act starts, stops or reboots a launched instance, on its node, and
// answers once done.
func (c *Control) Act(ctx context.Context, id, action string) (registry.LaunchedInstance, error) {
	switch action {
	case registry.ActionStart, registry.ActionStop, registry.ActionReboot:
	default:
		return registry.LaunchedInstance{}, wire.Errorf(wire.CodeBadRequest, "unknown action %.40q: want %s", action, strings.Join(registry.Actions, ", "))
	}
	id, err := registry.NormalizeUUID(id)
	if err != nil {
		return registry.LaunchedInstance{}, badRequest(err)
	}
	if c.dep == nil {
		return registry.LaunchedInstance{}, wire.Errorf(wire.CodeUnsupported, "this registry-service cannot reach allocators")
	}
	rec, _, err := c.readLaunched(ctx, id)
	if err != nil {
		return registry.LaunchedInstance{}, err
	}
	switch action {
	case registry.ActionStop:
		err = c.stopLaunched(ctx, rec)
	case registry.ActionStart:
		err = c.startLaunched(ctx, rec, false)
	case registry.ActionReboot:
		err = c.startLaunched(ctx, rec, true)
	}
	if err != nil {
		return registry.LaunchedInstance{}, err
	}
	c.log.Info("launched instance "+action, "uuid", id, "by", registry.CallerOf(ctx))
	return c.GetLaunched(ctx, id)
}

// stopLaunched marks the instance wanted stopped and stops it.
func (c *Control) stopLaunched(ctx context.Context, rec launchedRecord) error {
	if _, err := c.updateLaunched(ctx, rec.UUID, func(r *launchedRecord) error {
		r.Want = wantStopped
		return nil
	}); err != nil {
		return err
	}
	if err := c.stopLive(ctx, rec); err != nil {
		return err
	}
	// The allocator answers once the processes are gone, and removes the
	// record just after: wait for it, so that the answer says stopped.
	if err := c.waitGone(ctx, rec); err != nil {
		return err
	}
	_, err := c.updateLaunched(ctx, rec.UUID, func(r *launchedRecord) error {
		if r.Want == wantStopped {
			r.State, r.Message = registry.StateStopped, ""
		}
		return nil
	})
	return err
}

// stopLive stops the instance where it runs, if it runs.
func (c *Control) stopLive(ctx context.Context, rec launchedRecord) error {
	in, err := c.live(ctx, rec)
	if err != nil || in == nil {
		return err
	}
	nodes, err := c.nodeNames(ctx)
	if err != nil {
		return err
	}
	n, ok := nodes[in.Node]
	if !ok {
		return nil // its node is gone, and the instance with it
	}
	if err := c.dep.Stop(ctx, n, rec.UUID); err != nil && wire.CodeOf(err) != wire.CodeNotFound {
		return err
	}
	return nil
}

// startLaunched starts a stopped instance again on its node (reboot: stops
// it first). One never placed is left to the reconciler.
func (c *Control) startLaunched(ctx context.Context, rec launchedRecord, reboot bool) error {
	if rec.NodeID == "" {
		if reboot {
			return wire.Errorf(wire.CodeConflict, "instance %s has not started yet: nothing to reboot", rec.UUID)
		}
		_, err := c.updateLaunched(ctx, rec.UUID, func(r *launchedRecord) error {
			r.Want, r.State = wantRunning, registry.StatePending
			return nil
		})
		return err
	}
	nodes, err := c.nodeNames(ctx)
	if err != nil {
		return err
	}
	n, ok := nodes[rec.NodeID]
	if !ok {
		return wire.Errorf(wire.CodeConflict, "instance %s cannot start: its node %s is gone", rec.UUID, rec.Node)
	}
	in, err := c.live(ctx, rec)
	if err != nil {
		return err
	}
	switch {
	case in != nil && !reboot && in.State != registry.StateFailed:
		return nil // already running (or on its way)
	case in != nil:
		// Stopping, not running: the reconciler must not take the
		// instance for lost while it is down for the reboot.
		if _, err := c.updateLaunched(ctx, rec.UUID, func(r *launchedRecord) error {
			r.State = registry.StateStopping
			return nil
		}); err != nil {
			return err
		}
		if err := c.dep.Stop(ctx, n, rec.UUID); err != nil && wire.CodeOf(err) != wire.CodeNotFound {
			return err
		}
		if err := c.waitGone(ctx, rec); err != nil {
			return err
		}
	}
	if _, err := c.updateLaunched(ctx, rec.UUID, func(r *launchedRecord) error {
		r.Want = wantRunning
		return nil
	}); err != nil {
		return err
	}
	_, derr := c.dep.Deploy(ctx, n, deploy.Request{Op: deploy.OpDeploy, Service: rec.Service, ID: rec.UUID})
	_, err = c.updateLaunched(ctx, rec.UUID, func(r *launchedRecord) error {
		switch {
		case derr != nil:
			r.Want, r.State, r.Message = wantStopped, registry.StateStopped, "cannot start on "+rec.Node+": "+wire.MessageOf(derr)
		case reboot:
			r.Restarts++
			r.State, r.Message = registry.StateRunning, ""
		default:
			r.State, r.Message = registry.StateRunning, ""
		}
		return nil
	})
	if derr != nil {
		return wire.Errorf(wire.CodeConflict, "instance %s cannot start on %s: %s", rec.UUID, rec.Node, wire.MessageOf(derr))
	}
	return err
}

// waitGone waits until a stopped instance's record is gone from its node,
// so that its ID can be used again.
func (c *Control) waitGone(ctx context.Context, rec launchedRecord) error {
	for {
		in, err := c.live(ctx, rec)
		if err != nil || in == nil {
			return err
		}
		w := c.cli.Watch(ctx, instanceKeyOf(rec), clientv3.WithRev(0))
		select {
		case <-ctx.Done():
			return wire.Errorf(wire.CodeTimeout, "instance %s did not stop in time", rec.UUID)
		case <-w:
		}
	}
}

func instanceKeyOf(rec launchedRecord) string {
	return "/physarum/instances/" + rec.Service + "/" + rec.UUID
}

// Forget stops a launched instance and deletes its record; its callback
// goes once it has heard of the deletion.
func (c *Control) Forget(ctx context.Context, id string) (string, error) {
	id, err := registry.NormalizeUUID(id)
	if err != nil {
		return "", badRequest(err)
	}
	rec, _, err := c.readLaunched(ctx, id)
	if err != nil {
		return "", err
	}
	if _, err := c.updateLaunched(ctx, id, func(r *launchedRecord) error { r.Want = wantStopped; return nil }); err != nil {
		return "", err
	}
	if c.dep != nil {
		if err := c.stopLive(ctx, rec); err != nil {
			return "", err
		}
	}
	if _, err := c.cli.Delete(ctx, PrefixLaunched+id); err != nil {
		return "", unavailable("delete launched instance", err)
	}
	// Its callback stays until the callbacks worker has delivered this
	// deletion to it, then goes (registry-service/callbacks).
	c.log.Info("launched instance forgotten", "uuid", id, "by", registry.CallerOf(ctx))
	return "forgot instance " + id, nil
}

// reconcileLaunched places the launched instances not placed yet, stops
// those wanted stopped, and marks lost those whose node left. It returns
// the actions taken.
func (r *Reconciler) reconcileLaunched(ctx context.Context, s *snapshot) int {
	ids := make([]string, 0, len(s.launched))
	for id := range s.launched {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	r.mu.Lock()
	for p := range r.states {
		if _, ok := s.launched[strings.TrimPrefix(p.compute, "launched:")]; isLaunchPair(p) && !ok {
			delete(r.states, p)
		}
	}
	r.mu.Unlock()
	actions := 0
	for _, id := range ids {
		rec := s.launched[id]
		in, live := s.byID[id]
		r.mu.Lock()
		busy := r.launching[id] || r.stopping[id]
		r.mu.Unlock()
		switch {
		case busy:
		case rec.Want == wantStopped:
			if live && in.State != registry.StateStopping {
				r.stop(pair{rec.Service, ""}, in, s, "wanted stopped")
				actions++
			}
		case live:
		case rec.NodeID == "":
			if r.placeLaunched(s, rec) {
				actions++
			}
		case rec.State == registry.StatePending || rec.State == registry.StateStarting || rec.State == registry.StateRunning:
			r.gone(ctx, s, rec)
			actions++
		}
	}
	return actions
}

// gone records what became of a placed instance whose record went: lost
// with its node, or stopped by its allocator.
func (r *Reconciler) gone(ctx context.Context, s *snapshot, rec launchedRecord) {
	state, msg := registry.StateLost, fmt.Sprintf("its node %s left (its lease ran out)", rec.Node)
	for _, n := range s.nodes {
		if n.PeerID == rec.NodeID {
			state, msg = registry.StateStopped, fmt.Sprintf("its allocator %s stopped it", rec.Node)
		}
	}
	_, err := r.ctl.updateLaunched(ctx, rec.UUID, func(l *launchedRecord) error {
		if l.NodeID != rec.NodeID || l.State != rec.State {
			return errChanged // an action got there first
		}
		l.State, l.Message = state, msg
		return nil
	})
	if err != nil && !errors.Is(err, errChanged) {
		r.log.Warn("could not record a launched instance's end", "uuid", rec.UUID, "err", err)
		return
	}
	r.log.Info("launched instance "+state, "uuid", rec.UUID, "node", rec.Node)
}

var errChanged = errors.New("changed meanwhile")

// placeLaunched starts a launched instance within its compute, unless it
// is backing off after failed starts.
func (r *Reconciler) placeLaunched(s *snapshot, rec launchedRecord) bool {
	p := pair{rec.Service, "launched:" + rec.UUID}
	if st := r.state(p); r.cfg.Now().Before(st.BackoffUntil) {
		return false
	}
	info, ok := s.services[rec.Service]
	if !ok {
		return false
	}
	sel, msg := s.selector(rec.Compute)
	var cands []placement.Candidate
	if msg == "" {
		for _, nd := range s.nodes {
			if sel.Matches(nd) {
				cands = append(cands, placement.Candidate{Node: nd, RTTKnown: true, Instances: s.perNode[rec.Service][nd.PeerID]})
			}
		}
	}
	ranked, err := placement.Rank(placement.Request{Service: rec.Service, Info: info}, cands)
	if err != nil {
		r.failure(p, err.Error())
		return false
	}
	order := make([]registry.Node, len(ranked))
	for i, rk := range ranked {
		order[i] = rk.Node
	}
	r.mu.Lock()
	r.launching[rec.UUID] = true
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.trigger()
		ctx, cancel := context.WithTimeout(context.Background(), deploy.DefaultTimeout+5*time.Second)
		defer cancel()
		node, err := r.deployFirst(ctx, order, deploy.Request{Op: deploy.OpDeploy, Service: rec.Service, ID: rec.UUID})
		r.mu.Lock()
		delete(r.launching, rec.UUID)
		r.mu.Unlock()
		if err != nil {
			r.failure(p, err.Error())
			r.metrics.action("launch", "failed")
			_, _ = r.ctl.updateLaunched(ctx, rec.UUID, func(l *launchedRecord) error {
				l.Message = "cannot start yet: " + err.Error()
				return nil
			})
			return
		}
		r.metrics.action("launch", "ok")
		r.log.Info("launched instance started", "uuid", rec.UUID, "service", rec.Service, "node", nodeName(node))
		_, _ = r.ctl.updateLaunched(ctx, rec.UUID, func(l *launchedRecord) error {
			l.Node, l.NodeID, l.State, l.Message = nodeName(node), node.PeerID, registry.StateRunning, ""
			return nil
		})
	}()
	return true
}
