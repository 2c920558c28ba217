package server

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
)

// lifecycleServer is a server over a real, empty etcd with the service
// "svc" registered; writer alone is on its -writers allowlist.
func lifecycleServer(t *testing.T, writer peer.ID) (*Server, *clientv3.Client) {
	t.Helper()
	cli := emptyEtcd(t)
	st := NewStore(cli)
	s := newServer(&fakeMember{}, st, Config{Logger: slog.New(slog.DiscardHandler), Writers: map[peer.ID]bool{writer: true}})
	s.ctl = control.New(cli, st, control.Config{MaxScale: 100})
	t.Cleanup(s.cancel)
	if _, err := call(t, s, writer, registry.Request{Op: registry.OpAdd, Name: "svc", Info: validService()}); err != nil {
		t.Fatal(err)
	}
	return s, cli
}

// launchedKeys counts the launched instances' records in etcd.
func launchedKeys(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), control.PrefixLaunched, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

const testUUID = "0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"

// The lifecycle's operations on the registry protocol: launch under a
// chosen UUID (lower-cased), read it, list it by service, refuse a
// duplicate, a bad action (naming the valid ones) and bad UUIDs, forget
// it; writes need the allowlist, reads do not.
func TestLifecycleOperations(t *testing.T) {
	writer, stranger := p2ptest.ID(t, 1), p2ptest.ID(t, 2)
	s, cli := lifecycleServer(t, writer)
	launch := registry.Request{Op: registry.OpLaunch, Launch: &registry.LaunchRequest{UUID: strings.ToUpper(testUUID), Service: "svc"}}

	_, err := call(t, s, stranger, launch)
	wantCode(t, err, wire.CodeForbidden)
	if n := launchedKeys(t, cli); n != 0 {
		t.Fatalf("a refused launch wrote %d records", n)
	}
	resp, err := call(t, s, writer, launch)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Launched) != 1 || resp.Launched[0].UUID != testUUID || resp.Launched[0].State != registry.StatePending ||
		resp.Launched[0].Service != "svc" || resp.Launched[0].Compute != registry.ComputePhysarum || resp.Launched[0].Want != "running" {
		t.Fatalf("launch answered %+v", resp.Launched)
	}
	_, err = call(t, s, writer, launch)
	wantCode(t, err, wire.CodeConflict)

	// Reads: anyone.
	resp, err = call(t, s, stranger, registry.Request{Op: registry.OpLaunchedGet, UUID: testUUID})
	if err != nil || len(resp.Launched) != 1 || resp.Launched[0].UUID != testUUID {
		t.Fatalf("launched.get: %+v, %v", resp, err)
	}
	resp, err = call(t, s, stranger, registry.Request{Op: registry.OpLaunchedList, Name: "svc"})
	if err != nil || len(resp.Launched) != 1 {
		t.Fatalf("launched.list svc: %+v, %v", resp, err)
	}
	resp, err = call(t, s, stranger, registry.Request{Op: registry.OpLaunchedList, Name: "other"})
	if err != nil || len(resp.Launched) != 0 {
		t.Fatalf("launched.list other: %+v, %v", resp, err)
	}

	// Refusals, before anything is read or written.
	_, err = call(t, s, writer, registry.Request{Op: registry.OpLaunchedAct, UUID: testUUID, Action: "explode"})
	wantCode(t, err, wire.CodeBadRequest)
	if !strings.Contains(err.Error(), "start, stop, reboot") {
		t.Fatalf("a bad action's refusal %q does not list the valid ones", err)
	}
	_, err = call(t, s, stranger, registry.Request{Op: registry.OpLaunchedAct, UUID: testUUID, Action: registry.ActionStop})
	wantCode(t, err, wire.CodeForbidden)
	_, err = call(t, s, stranger, registry.Request{Op: registry.OpLaunchedForget, UUID: testUUID})
	wantCode(t, err, wire.CodeForbidden)
	for _, r := range []registry.Request{
		{Op: registry.OpLaunch},
		{Op: registry.OpLaunch, Launch: &registry.LaunchRequest{Service: "svc", UUID: "not-a-uuid"}},
		{Op: registry.OpLaunch, Launch: &registry.LaunchRequest{Service: "svc", Callback: "ftp://x"}},
		{Op: registry.OpLaunch, Launch: &registry.LaunchRequest{Service: "Bad Name"}},
		{Op: registry.OpLaunchedGet, UUID: "nope"},
		{Op: registry.OpLaunchedForget},
	} {
		_, err := call(t, s, writer, r)
		wantCode(t, err, wire.CodeBadRequest)
	}
	if n := launchedKeys(t, cli); n != 1 {
		t.Fatalf("%d launched records after refusals, want 1", n)
	}
	_, err = call(t, s, writer, registry.Request{Op: registry.OpLaunch, Launch: &registry.LaunchRequest{Service: "nosuch"}})
	wantCode(t, err, wire.CodeNotFound)

	resp, err = call(t, s, writer, registry.Request{Op: registry.OpLaunchedForget, UUID: testUUID})
	if err != nil || !strings.Contains(resp.Message, testUUID) {
		t.Fatalf("launched.forget: %+v, %v", resp, err)
	}
	_, err = call(t, s, writer, registry.Request{Op: registry.OpLaunchedGet, UUID: testUUID})
	wantCode(t, err, wire.CodeNotFound)
	if n := launchedKeys(t, cli); n != 0 {
		t.Fatalf("%d launched records after forget, want 0", n)
	}
}
