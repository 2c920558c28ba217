package server

import (
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
)

// callbackKeys counts the callbacks' definitions and states in etcd.
func callbackKeys(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	var n int64
	for _, prefix := range []string{control.PrefixCallbacks, control.PrefixCallbackState} {
		resp, err := cli.Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		n += resp.Count
	}
	return n
}

// The callback operations on the registry protocol: adding and deleting
// need the -writers allowlist, reading does not and never shows a
// secret; bad input is refused before anything is written.
func TestCallbackOperations(t *testing.T) {
	writer, stranger := p2ptest.ID(t, 1), p2ptest.ID(t, 2)
	s, cli := lifecycleServer(t, writer)
	add := registry.Request{Op: registry.OpCallbackAdd, Callback: &registry.Callback{URL: "https://example.com/hook", Service: "svc"}}

	_, err := call(t, s, stranger, add)
	wantCode(t, err, wire.CodeForbidden)
	for _, bad := range []registry.Request{
		{Op: registry.OpCallbackAdd},
		{Op: registry.OpCallbackAdd, Callback: &registry.Callback{URL: "gopher://example.com/"}},
		{Op: registry.OpCallbackAdd, Callback: &registry.Callback{URL: "http://h/", Service: "svc", Instance: testUUID}},
		{Op: registry.OpCallbackAdd, Callback: &registry.Callback{URL: "http://h/", Secret: "whsec_x"}},
	} {
		_, err := call(t, s, writer, bad)
		wantCode(t, err, wire.CodeBadRequest)
	}
	if n := callbackKeys(t, cli); n != 0 {
		t.Fatalf("refused adds wrote %d keys", n)
	}
	resp, err := call(t, s, writer, add)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Callbacks) != 1 || resp.Callbacks[0].Secret == "" || resp.Callbacks[0].Service != "svc" {
		t.Fatalf("callback.add answered %+v", resp.Callbacks)
	}
	id := resp.Callbacks[0].ID

	// Reads: anyone, never the secret.
	resp, err = call(t, s, stranger, registry.Request{Op: registry.OpCallbackList})
	if err != nil || len(resp.Callbacks) != 1 || resp.Callbacks[0].ID != id || resp.Callbacks[0].Secret != "" {
		t.Fatalf("callback.list: %+v, %v", resp, err)
	}
	resp, err = call(t, s, stranger, registry.Request{Op: registry.OpCallbackGet, ID: id})
	if err != nil || len(resp.Callbacks) != 1 || resp.Callbacks[0].Secret != "" {
		t.Fatalf("callback.get: %+v, %v", resp, err)
	}
	_, err = call(t, s, stranger, registry.Request{Op: registry.OpCallbackGet, ID: "nope"})
	wantCode(t, err, wire.CodeBadRequest)
	_, err = call(t, s, stranger, registry.Request{Op: registry.OpCallbackGet, ID: "cb_0000000000000000"})
	wantCode(t, err, wire.CodeNotFound)

	_, err = call(t, s, stranger, registry.Request{Op: registry.OpCallbackDelete, ID: id})
	wantCode(t, err, wire.CodeForbidden)
	resp, err = call(t, s, writer, registry.Request{Op: registry.OpCallbackDelete, ID: id})
	if err != nil || resp.Message != "deleted callback "+id {
		t.Fatalf("callback.delete: %+v, %v", resp, err)
	}
	if n := callbackKeys(t, cli); n != 0 {
		t.Errorf("%d keys left after the delete", n)
	}
	_, err = call(t, s, writer, registry.Request{Op: registry.OpCallbackDelete, ID: id})
	wantCode(t, err, wire.CodeNotFound)
}
