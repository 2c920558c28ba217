package server

import (
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/cluster/clustertest"
)

// These tests are about the Store itself, so they run it on a real
// single-member embedded etcd: one for the package, started by the first
// test that needs it and stopped by TestMain after them; each test starts
// from an empty registry.

var shared = clustertest.New("store-test")

// emptyEtcd returns the client a Store would use, on the shared etcd
// with every registry key deleted.
func emptyEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	return shared.Empty(t).KV()
}

func modRevision(t *testing.T, cli *clientv3.Client, key string) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read %s: %v (%d keys)", key, err, len(resp.Kvs))
	}
	return resp.Kvs[0].ModRevision
}

func TestStoreHeartbeatThatChangesNothingOnlyRenews(t *testing.T) {
	cli := emptyEtcd(t)
	st, ctx := NewStore(cli), t.Context()
	n := registry.Node{PeerID: "node-a", CPU: 1000, FreeCPU: 1000, Updated: time.Unix(1, 0)}
	if granted, err := st.PutNode(ctx, n, 10); err != nil || !granted {
		t.Fatalf("first heartbeat: granted %v, %v; want a new lease", granted, err)
	}
	written := modRevision(t, cli, nodeKey(n.PeerID))

	n.Updated = time.Unix(2, 0) // only the time moved
	if granted, err := st.PutNode(ctx, n, 10); err != nil || granted {
		t.Fatalf("second heartbeat: granted %v, %v; want the same lease", granted, err)
	}
	if got := modRevision(t, cli, nodeKey(n.PeerID)); got != written {
		t.Fatalf("a heartbeat that changed nothing rewrote the record (revision %d -> %d)", written, got)
	}

	n.FreeCPU = 500
	if granted, err := st.PutNode(ctx, n, 10); err != nil || granted {
		t.Fatalf("changed heartbeat: granted %v, %v; want the same lease", granted, err)
	}
	if got := modRevision(t, cli, nodeKey(n.PeerID)); got == written {
		t.Fatal("a heartbeat that changed the record did not write it")
	}

	// Another registry-service (no cache) finds the live lease in etcd.
	if granted, err := NewStore(cli).PutNode(ctx, n, 10); err != nil || granted {
		t.Fatalf("heartbeat through another store: granted %v, %v; want the live lease reused", granted, err)
	}
}

func TestStoreInstanceRecordsGoWithTheirNode(t *testing.T) {
	st, ctx := NewStore(emptyEtcd(t)), t.Context()
	inst := registry.Instance{ID: "i-1", Service: "svc", Node: "node-a", State: registry.StateRunning}
	if err := st.PutInstance(ctx, inst); wire.CodeOf(err) != wire.CodeConflict {
		t.Fatalf("instance of a node without a record: %v, want conflict", err)
	}
	if _, err := st.PutNode(ctx, registry.Node{PeerID: "node-a"}, 10); err != nil {
		t.Fatal(err)
	}
	if err := st.PutInstance(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if got, _, err := st.ListInstances(ctx, "svc"); err != nil || len(got) != 1 || got[0].ID != "i-1" {
		t.Fatalf("instances %+v, %v", got, err)
	}
	if err := st.DeleteNode(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	nodes, err := st.ListNodes(ctx)
	if err != nil || len(nodes) != 0 {
		t.Fatalf("nodes after delete %+v, %v", nodes, err)
	}
	if got, _, err := st.ListInstances(ctx, ""); err != nil || len(got) != 0 {
		t.Fatalf("instances outlived their node: %+v, %v", got, err)
	}
}

func TestStoreListAnnouncedSkipsRecordsItCannotRead(t *testing.T) {
	cli := emptyEtcd(t)
	ctx := t.Context()
	for k, v := range map[string]string{
		"a": `{"Name":"a","Role":"voter"}`,
		"b": `{"Name":"b","Role":"client","Addrs":["/ip4/127.0.0.1/tcp/1"]}`,
		"c": `not json`,
	} {
		if _, err := cli.Put(ctx, prefixMembers+k, v); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := NewStore(cli).ListAnnounced(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Name != "a" || recs[1].Name != "b" || recs[1].Role != registry.RoleClient {
		t.Fatalf("announced %+v, want a and b", recs)
	}
}

// TestStoreNodeNamesAreUniqueAmongLiveNodes: a node's name is claimed
// under its lease; another live node cannot take it (conflict, nothing
// written), its holder keeps it through heartbeats and other
// registry-services, a node that renames itself frees its old name, and a
// node that leaves frees its name.
func TestStoreNodeNamesAreUniqueAmongLiveNodes(t *testing.T) {
	cli := emptyEtcd(t)
	st, ctx := NewStore(cli), t.Context()
	a := registry.Node{PeerID: "node-a", Name: "n1", CPU: 1000}
	b := registry.Node{PeerID: "node-b", Name: "n1", CPU: 2000}
	if granted, err := st.PutNode(ctx, a, 10); err != nil || !granted {
		t.Fatalf("first claim of n1: granted %v, %v", granted, err)
	}
	_, err := st.PutNode(ctx, b, 10)
	if wire.CodeOf(err) != wire.CodeConflict || !strings.Contains(err.Error(), `allocator name "n1" is taken by live node node-a`) ||
		!strings.Contains(err.Error(), "-name") {
		t.Fatalf("second node named n1: %v; want a conflict naming the holder and -name", err)
	}
	if nodes, _ := st.ListNodes(ctx); len(nodes) != 1 || nodes[0].PeerID != "node-a" {
		t.Fatalf("nodes after the refused claim: %+v; want node-a alone", nodes)
	}
	// Another registry-service (no cache) refuses it too, and lets the
	// holder go on.
	if _, err := NewStore(cli).PutNode(ctx, b, 10); wire.CodeOf(err) != wire.CodeConflict {
		t.Fatalf("second node named n1, through another store: %v", err)
	}
	a.FreeCPU = 500 // a changed record is written again, name and all
	if _, err := NewStore(cli).PutNode(ctx, a, 10); err != nil {
		t.Fatalf("the holder's heartbeat through another store: %v", err)
	}
	if _, err := st.PutNode(ctx, a, 10); err != nil {
		t.Fatalf("the holder's heartbeat: %v", err)
	}

	// The holder renames itself: n1 is free, n2 is its.
	a.Name = "n2"
	if _, err := st.PutNode(ctx, a, 10); err != nil {
		t.Fatalf("rename to n2: %v", err)
	}
	if got := claims(t, cli); got["n1"] != "" || got["n2"] != "node-a" {
		t.Fatalf("claims after the rename: %v; want n2 alone, node-a's", got)
	}
	if _, err := st.PutNode(ctx, b, 10); err != nil {
		t.Fatalf("n1 after its holder renamed itself: %v", err)
	}
	// A rename seen by a registry-service that did not write the record.
	b.Name = "n3"
	if _, err := NewStore(cli).PutNode(ctx, b, 10); err != nil {
		t.Fatalf("rename to n3 through another store: %v", err)
	}
	if got := claims(t, cli); len(got) != 2 || got["n2"] != "node-a" || got["n3"] != "node-b" {
		t.Fatalf("claims after the second rename: %v", got)
	}

	// A node that leaves frees its name.
	if err := st.DeleteNode(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	c := registry.Node{PeerID: "node-c", Name: "n2"}
	if _, err := st.PutNode(ctx, c, 10); err != nil {
		t.Fatalf("the name of a node that left: %v", err)
	}
	// Unnamed nodes claim nothing; ill-formed names are refused.
	if _, err := st.PutNode(ctx, registry.Node{PeerID: "node-d"}, 10); err != nil {
		t.Fatalf("unnamed node: %v", err)
	}
	if _, err := st.PutNode(ctx, registry.Node{PeerID: "node-e", Name: "Not A Name"}, 10); wire.CodeOf(err) != wire.CodeBadRequest {
		t.Fatalf("ill-formed name: %v; want bad_request", err)
	}
}

// TestStoreNodeNameIsFreedWithItsLease: the claim lives under the node's
// lease, so a node that dies without a word frees its name when the lease
// runs out; a new lease of the same node (after an outage) keeps it.
func TestStoreNodeNameIsFreedWithItsLease(t *testing.T) {
	cli := emptyEtcd(t)
	st, ctx := NewStore(cli), t.Context()
	a := registry.Node{PeerID: "node-a", Name: "n1"}
	if _, err := st.PutNode(ctx, a, minTTL); err != nil {
		t.Fatal(err)
	}
	// Its lease revoked behind the store's back, as an expiry would: the
	// next heartbeat is granted a new lease and keeps the name.
	lease, _, err := st.nodeLease(ctx, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if granted, err := st.PutNode(ctx, a, minTTL); err != nil || !granted {
		t.Fatalf("heartbeat after the lease ended: granted %v, %v; want a new lease, the name kept", granted, err)
	}
	b := registry.Node{PeerID: "node-b", Name: "n1"}
	if _, err := st.PutNode(ctx, b, minTTL); wire.CodeOf(err) != wire.CodeConflict {
		t.Fatalf("n1 while node-a lives: %v", err)
	}
	// node-a dies: no more heartbeats. Its name is free within the TTL.
	eventually.Succeeds(t, 3*minTTL*time.Second, func() error {
		_, err := st.PutNode(ctx, b, minTTL)
		return err
	})
}

// claims reads every name claim: name -> peer ID.
func claims(t *testing.T, cli *clientv3.Client) map[string]string {
	t.Helper()
	resp, err := cli.Get(t.Context(), prefixNames, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefixNames)] = string(kv.Value)
	}
	return out
}
