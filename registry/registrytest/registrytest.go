// Package registrytest runs a real registry in a test's process: an
// embedded etcd member and the registry server on a p2ptest node, torn
// down when the test ends. Tests of the registry client, the allocator and
// the proxy use it instead of a fake.
package registrytest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/psk"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/cluster"
	"github.com/physarum-p2p/physarum/registry-service/server"
)

// Registry is a running registry: a node, its etcd member and server.
type Registry struct {
	Node   *p2ptest.Node
	Member *cluster.Member
	Server *server.Server
}

// Start starts a single-member registry cluster serving on node n (which
// must use the default test passphrase) and advertises it.
func Start(t testing.TB, n *p2ptest.Node) *Registry {
	t.Helper()
	key, err := psk.Derive(n.Spec.Passphrase)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := cluster.StartNew(ctx, cluster.Config{
		Name: n.ID().String(), DataDir: filepath.Join(dir, "data"), IP: "127.0.0.1",
		ClientPort: freeport.T(t), PeerPort: freeport.T(t), PSK: key, UnsafeNoFsync: true,
		Logger: p2ptest.Logger(t),
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	srv := server.New(n.Host(), m, server.Config{Logger: p2ptest.Logger(t)})
	t.Cleanup(func() {
		srv.Close()
		m.Close()
	})
	n.Advertise(registry.Rendezvous)
	return &Registry{Node: n, Member: m, Server: srv}
}

// Client returns a registry client on node n, closed when the test ends.
func Client(t testing.TB, n *p2ptest.Node) *registry.Client {
	t.Helper()
	c := registry.NewClient(n.Node, registry.Options{Timeout: 3 * time.Second})
	t.Cleanup(c.Close)
	return c
}

// Serve starts another registry server on node n over an existing member
// (a second registry-service of the same cluster, for failover tests).
func Serve(t testing.TB, n *p2ptest.Node, m *cluster.Member) *server.Server {
	t.Helper()
	srv := server.New(n.Host(), m, server.Config{Logger: p2ptest.Logger(t)})
	t.Cleanup(srv.Close)
	n.Advertise(registry.Rendezvous)
	return srv
}
