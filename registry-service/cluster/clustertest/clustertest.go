// Package clustertest gives a test binary one real embedded etcd member,
// shared by its tests: starting one per test would cost each a few
// hundred milliseconds. Tests that share it run one at a time and start
// from an empty registry (Empty).
//
//	var shared = clustertest.New("store-test")
//
//	func TestMain(m *testing.M) { code := m.Run(); shared.Close(); os.Exit(code) }
//
//	func TestX(t *testing.T) { cli := shared.Empty(t).KV() ... }
package clustertest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/psk"
	"github.com/physarum-p2p/physarum/registry-service/cluster"
)

// Shared is a single-member cluster started on first use and stopped by
// Close.
type Shared struct {
	name string
	once sync.Once
	m    *cluster.Member
	err  error
	dir  string
}

// New returns a Shared member named name (also its PSK's passphrase).
func New(name string) *Shared { return &Shared{name: name} }

// Member returns the member, starting it on first use; t fails when it
// cannot start.
func (s *Shared) Member(t testing.TB) *cluster.Member {
	t.Helper()
	s.once.Do(s.start)
	if s.err != nil {
		t.Fatalf("start the test etcd: %v", s.err)
	}
	return s.m
}

// Empty is Member with every registry key (/physarum/) deleted first.
func (s *Shared) Empty(t testing.TB) *cluster.Member {
	t.Helper()
	m := s.Member(t)
	if _, err := m.Client().Delete(t.Context(), "/physarum/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	return m
}

// Close stops the member, if it started, and removes its data: for
// TestMain, once the tests have run (before a goroutine-leak check).
func (s *Shared) Close() {
	if s.m != nil {
		s.m.Close()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// start runs outside any one test: the member outlives them.
func (s *Shared) start() {
	key, err := psk.Derive(s.name)
	if err != nil {
		s.err = err
		return
	}
	if s.dir, err = os.MkdirTemp("", s.name+"-"); err != nil {
		s.err = err
		return
	}
	ports, err := freeport.Take("127.0.0.1", 2, nil)
	if err != nil {
		s.err = err
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.m, s.err = cluster.StartNew(ctx, cluster.Config{
		Name: s.name, DataDir: s.dir, IP: "127.0.0.1",
		ClientPort: ports[0], PeerPort: ports[1], PSK: key, UnsafeNoFsync: true,
	})
}
