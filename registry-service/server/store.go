package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
)

// Key layout. Everything lives under /physarum/ so the etcd cluster could
// be shared, and each kind of record has its own prefix.
const (
	prefixServices  = "/physarum/services/"
	prefixNodes     = "/physarum/nodes/"
	prefixLeases    = "/physarum/leases/"
	prefixInstances = "/physarum/instances/"
	prefixMembers   = "/physarum/members/"
	// prefixNames holds each named node's claim on its name (the value
	// is its peer ID), under the node's lease.
	prefixNames = "/physarum/names/"
)

func serviceKey(name string) string { return prefixServices + name }
func nodeKey(id string) string      { return prefixNodes + id }
func leaseKey(id string) string     { return prefixLeases + id }
func nameKey(name string) string    { return prefixNames + name }
func instanceKey(service, id string) string {
	return prefixInstances + service + "/" + id
}

// TTL bounds for node leases, in seconds.
const (
	minTTL     = 2
	maxTTL     = 300
	defaultTTL = 10
)

// Store reads and writes registry records in etcd.
type Store struct {
	cli *clientv3.Client

	mu    sync.Mutex
	nodes map[string]nodeState // node leases and records this process wrote
}

// NewStore returns a Store on cli.
func NewStore(cli *clientv3.Client) *Store {
	return &Store{cli: cli, nodes: map[string]nodeState{}}
}

// addAttempts bounds the rounds of AddService against registrations of
// the same service that commit between its read and its write.
const addAttempts = 5

// AddService registers a service's definition (v.Info, registered by
// v.SetBy at v.SetAt; the versions given are ignored). The first
// definition is version 1; one that differs from the current definition
// (compared as stored, Version aside) is the next version, written with
// its entry under control.PrefixVersions in one transaction that also
// forgets the versions beyond registry.ServiceVersionsKept; the current
// definition registered again writes nothing. The transaction holds only
// if the definition is still the one read (its ModRevision), so two
// registrations never make the same version: the one that loses reads
// again and becomes the version after, or, having lost addAttempts times,
// a conflict.
//
// A definition stored before versions (no Version) is version 1; the
// first change after it keeps it as version 1 in the history.
func (s *Store) AddService(ctx context.Context, name string, v registry.ServiceVersion) (control.Added, error) {
	return s.AddServiceWith(ctx, name, v, nil)
}

// AddServiceWith is AddService that, when it writes a new version, also
// writes along.Key in the same transaction, guarded by along.ModRevision;
// along nil writes nothing more. Nothing is written when along.Value
// fails or along.Key has changed.
func (s *Store) AddServiceWith(ctx context.Context, name string, v registry.ServiceVersion, along *control.Along) (control.Added, error) {
	v.Info.Version = 0
	want, err := json.Marshal(v.Info)
	if err != nil {
		return control.Added{}, err
	}
	for range addAttempts {
		resp, err := s.cli.Get(ctx, serviceKey(name))
		if err != nil {
			return control.Added{}, unavailable("read service", err)
		}
		var (
			modRev  int64
			current int                   // the current version; 0: none, or unreadable
			prev    *registry.ServiceInfo // the current definition, when readable
			ops     []clientv3.Op
		)
		if len(resp.Kvs) > 0 {
			kv := resp.Kvs[0]
			modRev = kv.ModRevision
			var old registry.ServiceInfo
			if json.Unmarshal(kv.Value, &old) != nil {
				// Not ours to read: replaced by version 1, and
				// whatever history it had goes (a transaction
				// may not delete a key it puts: from version 2).
				ops = append(ops, clientv3.OpDelete(control.VersionKey(name, 2),
					clientv3.WithRange(clientv3.GetPrefixRangeEnd(versionsPrefix(name)))))
			} else {
				legacy := old.Version <= 0
				current = max(old.Version, 1)
				p := old
				p.Version = current
				prev = &p
				old.Version = 0
				if same, err := json.Marshal(old); err == nil && bytes.Equal(same, want) {
					return control.Added{Existed: true, Version: current, Revision: resp.Header.Revision}, nil
				}
				if legacy {
					old.Version = current
					b, err := json.Marshal(registry.ServiceVersion{Version: current, Info: old})
					if err != nil {
						return control.Added{}, err
					}
					ops = append(ops, clientv3.OpPut(control.VersionKey(name, current), string(b)))
				}
			}
		}
		next := current + 1
		v.Version, v.Info.Version = next, next
		record, err := json.Marshal(v.Info)
		if err != nil {
			return control.Added{}, err
		}
		entry, err := json.Marshal(v)
		if err != nil {
			return control.Added{}, err
		}
		ops = append(ops,
			clientv3.OpPut(serviceKey(name), string(record)),
			clientv3.OpPut(control.VersionKey(name, next), string(entry)))
		if oldest := next - registry.ServiceVersionsKept + 1; oldest > 1 {
			ops = append(ops, clientv3.OpDelete(control.VersionKey(name, 0), clientv3.WithRange(control.VersionKey(name, oldest))))
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(serviceKey(name)), "=", modRev)}
		var orElse []clientv3.Op
		if along != nil {
			value, err := along.Value(prev, next)
			if err != nil {
				return control.Added{}, err
			}
			ops = append(ops, clientv3.OpPut(along.Key, value))
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(along.Key), "=", along.ModRevision))
			orElse = append(orElse, clientv3.OpGet(along.Key, clientv3.WithKeysOnly()))
		}
		txn, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(orElse...).Commit()
		if err != nil {
			return control.Added{}, unavailable("write service", err)
		}
		if txn.Succeeded {
			return control.Added{Existed: len(resp.Kvs) > 0, Changed: true, Version: next, Revision: txn.Header.Revision}, nil
		}
		if along != nil && alongChanged(txn, along.ModRevision) {
			return control.Added{}, along.Changed
		}
	}
	return control.Added{}, wire.Errorf(wire.CodeConflict, "service %s: its definition kept changing while this one was registered; try again", name)
}

// alongChanged says whether the key read in a failed transaction's Else
// branch is no longer at rev (0: absent).
func alongChanged(txn *clientv3.TxnResponse, rev int64) bool {
	if len(txn.Responses) == 0 {
		return false
	}
	r := txn.Responses[0].GetResponseRange()
	if r == nil || len(r.Kvs) == 0 {
		return rev != 0
	}
	return r.Kvs[0].ModRevision != rev
}

// versionsPrefix is the prefix of a service's versions.
func versionsPrefix(name string) string { return control.PrefixVersions + name + "/" }

// decodeService reads a stored definition; one stored before versions is
// version 1.
func decodeService(b []byte) (registry.ServiceInfo, error) {
	var info registry.ServiceInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return info, err
	}
	info.Version = max(info.Version, 1)
	return info, nil
}

// GetService reads one service definition.
func (s *Store) GetService(ctx context.Context, name string) (registry.ServiceInfo, error) {
	resp, err := s.cli.Get(ctx, serviceKey(name))
	if err != nil {
		return registry.ServiceInfo{}, unavailable("read service", err)
	}
	if len(resp.Kvs) == 0 {
		return registry.ServiceInfo{}, wire.Errorf(wire.CodeNotFound, "no service named %q", name)
	}
	info, err := decodeService(resp.Kvs[0].Value)
	if err != nil {
		return info, fmt.Errorf("decode stored service %q: %w", name, err)
	}
	return info, nil
}

// ServiceHistory reads the versions kept of a service's definition,
// newest first, with the definition in one read. The current definition
// is always the first, even when it has no entry of its own (stored
// before versions).
func (s *Store) ServiceHistory(ctx context.Context, name string) ([]registry.ServiceVersion, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(serviceKey(name)),
		clientv3.OpGet(versionsPrefix(name), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)),
	).Commit()
	if err != nil {
		return nil, unavailable("read service history", err)
	}
	cur := resp.Responses[0].GetResponseRange()
	if cur == nil || len(cur.Kvs) == 0 {
		return nil, wire.Errorf(wire.CodeNotFound, "no service named %q", name)
	}
	info, err := decodeService(cur.Kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("decode stored service %q: %w", name, err)
	}
	var out []registry.ServiceVersion
	if hist := resp.Responses[1].GetResponseRange(); hist != nil {
		for _, kv := range hist.Kvs {
			var v registry.ServiceVersion
			if json.Unmarshal(kv.Value, &v) == nil && v.Version > 0 && v.Version <= info.Version {
				out = append(out, v)
			}
		}
	}
	if len(out) == 0 || out[0].Version != info.Version {
		out = append([]registry.ServiceVersion{{Version: info.Version, Info: info}}, out...)
	}
	return out, nil
}

// ListServices reads every service definition.
func (s *Store) ListServices(ctx context.Context) (map[string]registry.ServiceInfo, error) {
	resp, err := s.cli.Get(ctx, prefixServices, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("list services", err)
	}
	out := make(map[string]registry.ServiceInfo, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		info, err := decodeService(kv.Value)
		if err != nil {
			continue // written by something else; not ours to serve
		}
		out[strings.TrimPrefix(string(kv.Key), prefixServices)] = info
	}
	return out, nil
}

// DeleteService removes a service definition, its desired counts, its
// autoscaling policy and its versions, in one transaction: a service never
// outlives its definition in desired state (the reconciler then stops its
// pinned instances), and one registered again under the name starts again
// at version 1.
func (s *Store) DeleteService(ctx context.Context, name string) (int64, error) {
	resp, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(serviceKey(name)), ">", 0),
	).Then(
		clientv3.OpDelete(serviceKey(name)),
		clientv3.OpDelete(control.PrefixDesired+name+"/", clientv3.WithPrefix()),
		clientv3.OpDelete(control.PrefixAutoscale+name+"/", clientv3.WithPrefix()),
		clientv3.OpDelete(control.PrefixRollouts+name),
		clientv3.OpDelete(versionsPrefix(name), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, unavailable("delete service", err)
	}
	if !resp.Succeeded {
		return 0, wire.Errorf(wire.CodeNotFound, "no service named %q", name)
	}
	return resp.Header.Revision, nil
}

// PutNode keeps an allocator's node record under its lease. A heartbeat
// that changes nothing (Updated aside) only renews the lease: one cheap
// etcd call, not a read and a write, which is what lets one registry carry
// a hundred nodes heartbeating every few seconds. A record that changed is
// written; a lease that expired is granted anew (granted is then true).
//
// A named node (Node.Name, the allocator's -name) claims its name under
// the same lease, in the same transaction as its record, so that the name
// is free again when the node dies. A name held by another live node is
// refused with a conflict and nothing is written; a node that changes its
// name gives up the old one in that transaction.
func (s *Store) PutNode(ctx context.Context, node registry.Node, ttl int) (granted bool, err error) {
	if node.Name != "" {
		if err := registry.ValidateComputeName(node.Name); err != nil {
			return false, badRequest(err)
		}
	}
	if ttl == 0 {
		ttl = defaultTTL
	}
	ttl = min(max(ttl, minTTL), maxTTL)
	sum, err := nodeDigest(node)
	if err != nil {
		return false, err
	}
	b, err := json.Marshal(node)
	if err != nil {
		return false, err
	}
	st, known := s.cached(node.PeerID)
	lease := st.lease
	if !known {
		var ok bool
		if lease, ok, err = s.nodeLease(ctx, node.PeerID); err != nil {
			return false, err
		} else if !ok {
			lease = 0
		}
	}
	if lease != 0 {
		if _, err := s.cli.KeepAliveOnce(ctx, lease); err == nil {
			if known && st.digest == sum {
				return false, nil
			}
			oldName := st.name
			if !known {
				oldName = s.storedName(ctx, node.PeerID)
			}
			err := s.writeNode(ctx, node, string(b), lease, oldName, false)
			if err == nil {
				s.remember(node.PeerID, nodeState{lease: lease, digest: sum, name: node.Name})
				return false, nil
			}
			if wire.CodeOf(err) == wire.CodeConflict {
				return false, err
			}
		}
		// Expired or revoked: grant anew.
	}
	grant, err := s.cli.Grant(ctx, int64(ttl))
	if err != nil {
		return false, unavailable("grant node lease", err)
	}
	if err := s.writeNode(ctx, node, string(b), grant.ID, st.name, true); err != nil {
		s.forget(node.PeerID)
		// Nothing was written under it; let it go now rather than at
		// its TTL.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_, _ = s.cli.Revoke(rctx, grant.ID)
		cancel()
		if wire.CodeOf(err) == wire.CodeConflict {
			return false, err
		}
		return false, unavailable("write node record", err)
	}
	s.remember(node.PeerID, nodeState{lease: grant.ID, digest: sum, name: node.Name})
	return true, nil
}

// nameClaimAttempts bounds the rounds of writeNode against a name whose
// claim appears and disappears meanwhile (a node dying as another starts).
const nameClaimAttempts = 3

// writeNode writes a node's record (and, with withLeaseKey, the pointer to
// its lease) under lease in one transaction that also claims the node's
// name, if it has one: the claim must be free (never created) or already
// the node's own. oldName, when the node held another name, is released
// in the same transaction if it is still the node's.
func (s *Store) writeNode(ctx context.Context, node registry.Node, record string, lease clientv3.LeaseID, oldName string, withLeaseKey bool) error {
	var ops []clientv3.Op
	if withLeaseKey {
		ops = append(ops, clientv3.OpPut(leaseKey(node.PeerID), strconv.FormatInt(int64(lease), 16), clientv3.WithLease(lease)))
	}
	ops = append(ops, clientv3.OpPut(nodeKey(node.PeerID), record, clientv3.WithLease(lease)))
	if oldName != "" && oldName != node.Name {
		old := nameKey(oldName)
		ops = append(ops, clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value(old), "=", node.PeerID)},
			[]clientv3.Op{clientv3.OpDelete(old)}, nil))
	}
	if node.Name == "" {
		_, err := s.cli.Txn(ctx).Then(ops...).Commit()
		return err
	}
	nk := nameKey(node.Name)
	ops = append(ops, clientv3.OpPut(nk, node.PeerID, clientv3.WithLease(lease)))
	if oldName == node.Name {
		// The usual rewrite (a busy node's heartbeat): the name is
		// already the node's, so ask that first, in one transaction.
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(nk), "=", node.PeerID)).Then(ops...).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
	for range nameClaimAttempts {
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(nk), "=", 0)).
			Then(ops...).Else(clientv3.OpGet(nk)).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		holder := ""
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			holder = string(r.Kvs[0].Value)
		}
		switch holder {
		case "":
			continue // released since the compare: claim it again
		case node.PeerID:
			// Ours already (under this lease, or an older one of ours
			// still alive): move it to this lease with the record.
			resp, err = s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(nk), "=", node.PeerID)).Then(ops...).Commit()
			if err != nil {
				return err
			}
			if resp.Succeeded {
				return nil
			}
		default:
			return wire.Errorf(wire.CodeConflict, "allocator name %q is taken by live node %s; give each allocator its own -name", node.Name, holder)
		}
	}
	return wire.Errorf(wire.CodeUnavailable, "claim allocator name %q: its claim kept changing; try again", node.Name)
}

// storedName is the name in a node's stored record ("" if none or
// unreadable): what a registry-service that has not written the record
// itself knows of the name the node held.
func (s *Store) storedName(ctx context.Context, id string) string {
	resp, err := s.cli.Get(ctx, nodeKey(id))
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	var n registry.Node
	if json.Unmarshal(resp.Kvs[0].Value, &n) != nil {
		return ""
	}
	return n.Name
}

// nodeDigest is what a node record says, its Updated time aside.
func nodeDigest(n registry.Node) (string, error) {
	n.Updated = time.Time{}
	b, err := json.Marshal(n)
	return string(b), err
}

// nodeState is what this registry-service last wrote for a node.
type nodeState struct {
	lease  clientv3.LeaseID
	digest string
	name   string // the name it claimed
}

func (s *Store) cached(id string) (nodeState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.nodes[id]
	return st, ok
}

func (s *Store) remember(id string, st nodeState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes[id] = st
}

func (s *Store) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.nodes, id)
}

// nodeLease returns the lease of a node's records, if it has a live one.
func (s *Store) nodeLease(ctx context.Context, id string) (clientv3.LeaseID, bool, error) {
	// A stale answer costs nothing: renewing a lease that expired fails,
	// and the caller grants a new one.
	resp, err := s.cli.Get(ctx, leaseKey(id), clientv3.WithSerializable())
	if err != nil {
		return 0, false, unavailable("read node lease", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(string(resp.Kvs[0].Value), 16, 64)
	if err != nil {
		return 0, false, nil
	}
	return clientv3.LeaseID(v), true, nil
}

// DeleteNode revokes a node's lease: its record and instances go at once.
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	lease, ok, err := s.nodeLease(ctx, id)
	if err != nil || !ok {
		return err
	}
	s.forget(id)
	if _, err := s.cli.Revoke(ctx, lease); err != nil {
		return unavailable("revoke node lease", err)
	}
	return nil
}

// ListNodes reads every live node record.
func (s *Store) ListNodes(ctx context.Context) ([]registry.Node, error) {
	resp, err := s.cli.Get(ctx, prefixNodes, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("list nodes", err)
	}
	out := make([]registry.Node, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var n registry.Node
		if json.Unmarshal(kv.Value, &n) == nil {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PeerID < out[j].PeerID })
	return out, nil
}

// PutInstance writes an instance record under its node's lease, so that
// it goes away with the node.
func (s *Store) PutInstance(ctx context.Context, inst registry.Instance) error {
	lease, ok, err := s.nodeLease(ctx, inst.Node)
	if err != nil {
		return err
	}
	if !ok {
		return wire.Errorf(wire.CodeConflict, "node %s has no live record; publish the node record first", inst.Node)
	}
	b, err := json.Marshal(inst)
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, instanceKey(inst.Service, inst.ID), string(b), clientv3.WithLease(lease)); err != nil {
		if strings.Contains(err.Error(), "requested lease not found") {
			return wire.Errorf(wire.CodeConflict, "node %s lease expired; publish the node record again", inst.Node)
		}
		return unavailable("write instance", err)
	}
	return nil
}

// DeleteInstance removes an instance record.
func (s *Store) DeleteInstance(ctx context.Context, service, id string) error {
	if _, err := s.cli.Delete(ctx, instanceKey(service, id)); err != nil {
		return unavailable("delete instance", err)
	}
	return nil
}

// ListInstances reads the instance records of one service, or of all
// when service is "". It returns the revision of the read, from which a
// watch continues.
func (s *Store) ListInstances(ctx context.Context, service string) ([]registry.Instance, int64, error) {
	resp, err := s.cli.Get(ctx, instancePrefix(service), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, unavailable("list instances", err)
	}
	out := make([]registry.Instance, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var inst registry.Instance
		if json.Unmarshal(kv.Value, &inst) == nil {
			out = append(out, inst)
		}
	}
	return out, resp.Header.Revision, nil
}

// ListAnnounced reads the records registry-services keep alive about
// themselves (see Server.announce), skipping any it cannot decode.
func (s *Store) ListAnnounced(ctx context.Context) ([]announceRecord, error) {
	resp, err := s.cli.Get(ctx, prefixMembers, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("list members", err)
	}
	out := make([]announceRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec announceRecord
		if json.Unmarshal(kv.Value, &rec) == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

func instancePrefix(service string) string {
	if service == "" {
		return prefixInstances
	}
	return prefixInstances + service + "/"
}

// instanceIDFromKey returns the ID part of an instance key.
func instanceIDFromKey(key string) string {
	return key[strings.LastIndexByte(key, '/')+1:]
}

// unavailable wraps an etcd failure as a structured error the client can
// fail over on.
func unavailable(action string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return wire.Errorf(wire.CodeTimeout, "%s: %v", action, err)
	}
	return wire.Errorf(wire.CodeUnavailable, "%s: %v", action, err)
}
