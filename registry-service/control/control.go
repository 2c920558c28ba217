// Package control is desired state (SPEC.md section 12), one
// implementation behind every door: Control serves each control operation
// (services, computes, scale, status) over etcd for the registry protocol
// and the HTTP API alike, and the Reconciler, run by the elected leader
// among the registry-service voters, keeps the desired count of pinned
// instances running on each compute.
package control

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/events"
)

// records are the registry's own records that desired state reads and
// writes. registry-service/server's *Store implements it; errors the
// caller can act on are *wire.Error.
type records interface {
	// AddService registers v.Info as service name's definition, with who
	// registers it and when (v.SetBy, v.SetAt; v.Version and
	// v.Info.Version are ignored): a new version when it differs from the
	// current definition, nothing written when it does not. The version
	// is written with the versions kept (PrefixVersions) in one
	// transaction, guarded so that two registrations never make the same
	// version; one that keeps losing that race is a conflict.
	AddService(ctx context.Context, name string, v registry.ServiceVersion) (Added, error)
	// AddServiceWith is AddService that also writes along in the same
	// transaction when it writes a new version, and only then.
	AddServiceWith(ctx context.Context, name string, v registry.ServiceVersion, along *Along) (Added, error)
	GetService(ctx context.Context, name string) (registry.ServiceInfo, error)
	// ServiceHistory reads the versions kept of a service's definition,
	// newest (the current one) first; not_found without the service.
	ServiceHistory(ctx context.Context, name string) ([]registry.ServiceVersion, error)
	ListServices(ctx context.Context) (map[string]registry.ServiceInfo, error)
	// DeleteService deletes a definition, its desired counts (under
	// PrefixDesired), its autoscaling policy and its versions
	// (PrefixVersions) in one transaction.
	DeleteService(ctx context.Context, name string) (rev int64, err error)
	ListNodes(ctx context.Context) ([]registry.Node, error)
	ListInstances(ctx context.Context, service string) ([]registry.Instance, int64, error)
}

// Along is a key written in the same transaction as a new version of a
// service's definition: an update's rollout record, so that a version is
// never registered without its rollout (which decides where it serves),
// nor a rollout written for a version that is not.
type Along struct {
	Key string
	// ModRevision is the key's revision as read (0: absent): the
	// transaction holds only while it still is, else the add fails with
	// Changed.
	ModRevision int64
	Changed     error
	// Value is the key's value, given the definition the new version
	// replaces as the transaction reads it (nil: the service has none)
	// and the new version's number. An error aborts the add, and is
	// returned.
	Value func(prev *registry.ServiceInfo, version int) (string, error)
}

// Added is what registering a service's definition did.
type Added struct {
	// Existed says the service had a definition before.
	Existed bool
	// Changed says the definition was written, as version Version: it
	// was the first, or differed from the current one. When false the
	// current definition, version Version, was registered again and
	// nothing was written.
	Changed bool
	// Version is the service's version now.
	Version int
	// Revision is the registry's revision after the write (of the read,
	// when nothing was written).
	Revision int64
}

// Config configures a Control.
type Config struct {
	// MaxScale caps a desired count (default registry.DefaultMaxScale).
	MaxScale int
	Logger   *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Control serves the control operations over etcd. Safe for concurrent
// use.
type Control struct {
	cli  *clientv3.Client
	recs records
	cfg  Config
	log  *slog.Logger
	dep  Deployer         // nil: no lifecycle actions (tests of the rest)
	ev   *events.Streamer // the event streams' (SetEvents); nil: one on cli, without metrics
}

var _ registry.Controller = (*Control)(nil)

// New returns a Control over cli and the registry's records.
func New(cli *clientv3.Client, recs records, cfg Config) *Control {
	if cfg.MaxScale <= 0 {
		cfg.MaxScale = registry.DefaultMaxScale
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Control{cli: cli, recs: recs, cfg: cfg, log: cfg.Logger}
}

// AddService registers a service definition: version 1 of a new
// service, the next version of one whose definition differs (info.Version
// is ignored), nothing new when it is the current definition. The message
// says which: "added service x, version 1", "updated service x, version
// 4", "service x unchanged, version 3".
func (c *Control) AddService(ctx context.Context, name string, info registry.ServiceInfo) (string, error) {
	msg, _, err := c.AddServiceRev(ctx, name, info)
	return msg, err
}

// AddServiceRev is AddService that also returns the registry's revision.
func (c *Control) AddServiceRev(ctx context.Context, name string, info registry.ServiceInfo) (string, int64, error) {
	if err := registry.ValidateName(name); err != nil {
		return "", 0, badRequest(err)
	}
	if err := info.Validate(); err != nil {
		return "", 0, badRequest(err)
	}
	info.Version = 0
	by := registry.CallerOf(ctx)
	a, err := c.recs.AddService(ctx, name, registry.ServiceVersion{Info: info, SetBy: by, SetAt: c.cfg.Now().UTC()})
	if err != nil {
		return "", 0, err
	}
	switch {
	case !a.Changed:
		c.log.Debug("service unchanged", "service", name, "version", a.Version, "by", by)
		return fmt.Sprintf("service %s unchanged, version %d", name, a.Version), a.Revision, nil
	case a.Existed:
		c.log.Info("updated service", "service", name, "version", a.Version, "by", by)
		return fmt.Sprintf("updated service %s, version %d", name, a.Version), a.Revision, nil
	}
	c.log.Info("added service", "service", name, "version", a.Version, "by", by)
	return fmt.Sprintf("added service %s, version %d", name, a.Version), a.Revision, nil
}

var _ registry.VersionHistory = (*Control)(nil)

// History lists the versions kept of a service's definition (the last
// registry.ServiceVersionsKept), newest (the current one) first.
func (c *Control) History(ctx context.Context, name string) ([]registry.ServiceVersion, error) {
	if err := registry.ValidateName(name); err != nil {
		return nil, badRequest(err)
	}
	return c.recs.ServiceHistory(ctx, name)
}

// GetService reads a service definition.
func (c *Control) GetService(ctx context.Context, name string) (registry.ServiceInfo, error) {
	if err := registry.ValidateName(name); err != nil {
		return registry.ServiceInfo{}, badRequest(err)
	}
	return c.recs.GetService(ctx, name)
}

// ListServices reads every service definition.
func (c *Control) ListServices(ctx context.Context) (map[string]registry.ServiceInfo, error) {
	return c.recs.ListServices(ctx)
}

// DeleteService removes a service and its desired counts; the reconciler
// then stops its pinned instances and forgets what it kept about it.
func (c *Control) DeleteService(ctx context.Context, name string) (string, error) {
	msg, _, err := c.DeleteServiceRev(ctx, name)
	return msg, err
}

// DeleteServiceRev is DeleteService that also returns the revision.
func (c *Control) DeleteServiceRev(ctx context.Context, name string) (string, int64, error) {
	if err := registry.ValidateName(name); err != nil {
		return "", 0, badRequest(err)
	}
	// The store deletes the definition and its desired counts together.
	rev, err := c.recs.DeleteService(ctx, name)
	if err != nil {
		return "", 0, err
	}
	c.log.Info("deleted service", "service", name, "by", registry.CallerOf(ctx))
	return "deleted service " + name, rev, nil
}

// Scale sets the desired count of pinned instances of service on compute
// ("" means registry.ComputePhysarum). The last write wins.
func (c *Control) Scale(ctx context.Context, service, compute string, number int) (registry.Desired, error) {
	if compute == "" {
		compute = registry.ComputePhysarum
	}
	if err := registry.ValidateName(service); err != nil {
		return registry.Desired{}, badRequest(err)
	}
	if number < 0 || number > c.cfg.MaxScale {
		return registry.Desired{}, wire.Errorf(wire.CodeBadRequest, "number %d: want 0 to %d (registry-service -max-scale)", number, c.cfg.MaxScale)
	}
	if _, err := c.recs.GetService(ctx, service); err != nil {
		return registry.Desired{}, err
	}
	if err := c.computeExists(ctx, compute); err != nil {
		return registry.Desired{}, err
	}
	d := registry.Desired{
		Service: service, Compute: compute, Number: number,
		SetBy: registry.CallerOf(ctx), SetAt: c.cfg.Now().UTC(),
	}
	rev, err := putJSONRev(ctx, c.cli, desiredKey(service, compute), d)
	if err != nil {
		return registry.Desired{}, err
	}
	d.Revision = rev
	c.log.Info("desired count set", "service", service, "compute", compute, "number", number, "by", d.SetBy)
	return d, nil
}

// computeExists checks a compute cheaply: "physarum" always exists, an
// operator's is one key; only an allocator's own needs the node list.
func (c *Control) computeExists(ctx context.Context, name string) error {
	if name == registry.ComputePhysarum {
		return nil
	}
	if err := registry.ValidateComputeName(name); err != nil {
		return badRequest(err)
	}
	resp, err := c.cli.Get(ctx, PrefixComputes+name, clientv3.WithCountOnly())
	if err != nil {
		return unavailable("read compute", err)
	}
	if resp.Count > 0 {
		return nil
	}
	_, err = c.GetCompute(ctx, name)
	return err
}

// ListComputes lists every compute: "physarum", each live allocator's
// own, and the operators', by name.
func (c *Control) ListComputes(ctx context.Context) ([]registry.ComputeInfo, error) {
	nodes, err := c.recs.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	ops, err := listOperatorComputes(ctx, c.cli)
	if err != nil {
		return nil, err
	}
	return computeInfos(nodes, ops), nil
}

// computeInfos builds the compute list from live nodes and operators'
// computes. An operator's compute named like a node hides the node's.
func computeInfos(nodes []registry.Node, ops map[string]storedCompute) []registry.ComputeInfo {
	infos := map[string]registry.ComputeInfo{}
	add := func(ci registry.ComputeInfo) {
		sel, _ := registry.ParseConnector(ci.Connector)
		ci.Kind = sel.Kind
		ci.Nodes = []string{}
		for _, n := range nodes {
			if sel.Matches(n) {
				ci.Nodes = append(ci.Nodes, nodeName(n))
			}
		}
		sort.Strings(ci.Nodes)
		infos[ci.Name] = ci
	}
	for _, n := range nodes {
		if n.Name != "" {
			add(registry.ComputeInfo{Compute: registry.Compute{Name: n.Name, Connector: registry.NodeConnector(n.Name)}, Builtin: true})
		}
	}
	for _, oc := range ops {
		add(registry.ComputeInfo{Compute: oc.Compute, SetBy: oc.SetBy, SetAt: oc.SetAt})
	}
	add(registry.ComputeInfo{Compute: registry.Compute{Name: registry.ComputePhysarum, Connector: registry.ComputePhysarum}, Builtin: true})
	out := make([]registry.ComputeInfo, 0, len(infos))
	for _, ci := range infos {
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b registry.ComputeInfo) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// nodeName is how a node is shown: its name, or its peer ID when it has
// none (an allocator of an older version).
func nodeName(n registry.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return n.PeerID
}

// GetCompute reads one compute.
func (c *Control) GetCompute(ctx context.Context, name string) (registry.ComputeInfo, error) {
	if err := registry.ValidateComputeName(name); err != nil {
		return registry.ComputeInfo{}, badRequest(err)
	}
	all, err := c.ListComputes(ctx)
	if err != nil {
		return registry.ComputeInfo{}, err
	}
	names := make([]string, 0, len(all))
	for _, ci := range all {
		if ci.Name == name {
			return ci, nil
		}
		names = append(names, ci.Name)
	}
	return registry.ComputeInfo{}, notFound("no compute named %q (computes: %s)", name, joinMax(names, 10))
}

func joinMax(s []string, n int) string {
	if len(s) > n {
		return fmt.Sprintf("%s and %d more", joinMax(s[:n], n), len(s)-n)
	}
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out
}

// PutCompute defines or redefines an operator's compute. The builtin
// ones ("physarum", an allocator's own) cannot be redefined.
func (c *Control) PutCompute(ctx context.Context, cp registry.Compute) (string, error) {
	if err := cp.Validate(); err != nil {
		return "", badRequest(err)
	}
	if cp.Name == registry.ComputePhysarum {
		return "", conflict("compute %q is built in (the whole network): choose another name", cp.Name)
	}
	nodes, err := c.recs.ListNodes(ctx)
	if err != nil {
		return "", err
	}
	for _, n := range nodes {
		if n.Name == cp.Name {
			return "", conflict("compute %q is the allocator of that name (peer %s): choose another name", cp.Name, n.PeerID)
		}
	}
	b := storedCompute{Compute: cp, SetBy: registry.CallerOf(ctx), SetAt: c.cfg.Now().UTC()}
	resp, err := c.cli.Get(ctx, PrefixComputes+cp.Name, clientv3.WithCountOnly())
	if err != nil {
		return "", unavailable("read compute", err)
	}
	if err := putJSON(ctx, c.cli, PrefixComputes+cp.Name, b); err != nil {
		return "", err
	}
	msg := "added compute " + cp.Name
	if resp.Count > 0 {
		msg = "updated compute " + cp.Name
	}
	c.log.Info(msg, "connector", cp.Connector, "by", b.SetBy)
	return msg, nil
}

// DeleteCompute removes an operator's compute. It is refused while a
// service has a desired count above 0 on it: scale those to 0 first, so
// that no instance is left counted against a compute that is gone.
func (c *Control) DeleteCompute(ctx context.Context, name string) (string, error) {
	if err := registry.ValidateComputeName(name); err != nil {
		return "", badRequest(err)
	}
	ops, err := listOperatorComputes(ctx, c.cli)
	if err != nil {
		return "", err
	}
	if _, ok := ops[name]; !ok {
		if ci, err := c.GetCompute(ctx, name); err == nil && ci.Builtin {
			return "", conflict("compute %q is built in and cannot be deleted", name)
		}
		return "", notFound("no compute named %q defined by an operator", name)
	}
	desired, err := listDesired(ctx, c.cli, "")
	if err != nil {
		return "", err
	}
	var zero []string
	for p, d := range desired {
		if p.compute != name {
			continue
		}
		if d.Number > 0 {
			return "", conflict("service %s has a desired count of %d on compute %s: scale it to 0 first", p.service, d.Number, name)
		}
		zero = append(zero, desiredKey(p.service, p.compute))
	}
	ops2 := []clientv3.Op{clientv3.OpDelete(PrefixComputes + name)}
	for _, k := range zero {
		ops2 = append(ops2, clientv3.OpDelete(k))
	}
	if _, err := c.cli.Txn(ctx).Then(ops2...).Commit(); err != nil {
		return "", unavailable("delete compute", err)
	}
	c.log.Info("deleted compute", "compute", name, "by", registry.CallerOf(ctx))
	return "deleted compute " + name, nil
}
