package control_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
	"github.com/physarum-p2p/physarum/registry-service/server"
)

const uuid = "0b6e3a4c-6a3f-4c1e-9d1e-2f7d1d9c0a11"

func TestAddCallbackRefusesBadInputAndWritesNothing(t *testing.T) {
	m := member(t)
	ctl := control.New(m.KV(), server.NewStore(m.KV()), control.Config{})
	okSecret := registry.SecretPrefix + base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		name string
		cb   registry.Callback
		want string // in the message
	}{
		{"no url", registry.Callback{}, "url: missing"},
		{"ftp", registry.Callback{URL: "ftp://example.com/x"}, "http:// or https://"},
		{"javascript", registry.Callback{URL: "javascript:alert(1)"}, "http:// or https://"},
		{"relative", registry.Callback{URL: "/hook"}, "http:// or https://"},
		{"no host", registry.Callback{URL: "http:///hook"}, "no host"},
		{"user info", registry.Callback{URL: "https://user:pw@example.com/"}, "user information"},
		{"too long", registry.Callback{URL: "https://example.com/" + strings.Repeat("a", registry.MaxCallbackURL)}, "at most 2048"},
		{"bad escape", registry.Callback{URL: "http://example.com/%zz"}, "invalid URL escape"},
		{"both", registry.Callback{URL: "http://h/", Instance: uuid, Service: "svc"}, "give one of them"},
		{"bad uuid", registry.Callback{URL: "http://h/", Instance: "not-a-uuid"}, "not a UUID"},
		{"bad service", registry.Callback{URL: "http://h/", Service: "Bad Name"}, "service name"},
		{"secret without prefix", registry.Callback{URL: "http://h/", Secret: "hunter2hunter2hunter2"}, "want whsec_"},
		{"secret not base64", registry.Callback{URL: "http://h/", Secret: "whsec_!!!"}, "not standard base64"},
		{"secret too short", registry.Callback{URL: "http://h/", Secret: registry.SecretPrefix + base64.StdEncoding.EncodeToString(make([]byte, 8))}, "8 bytes"},
		{"secret too long", registry.Callback{URL: "http://h/", Secret: registry.SecretPrefix + base64.StdEncoding.EncodeToString(make([]byte, 65))}, "65 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ctl.AddCallback(t.Context(), tc.cb)
			if wire.CodeOf(err) != wire.CodeBadRequest || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AddCallback(%+v) = %v; want bad_request saying %q", tc.cb, err, tc.want)
			}
		})
	}
	for _, prefix := range []string{control.PrefixCallbacks, control.PrefixCallbackState} {
		resp, err := m.Client().Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 0 {
			t.Errorf("%d keys under %s after refusals", resp.Count, prefix)
		}
	}
	// A given secret of the right form is kept.
	cb, err := ctl.AddCallback(t.Context(), registry.Callback{URL: "https://example.com/hook", Secret: okSecret})
	if err != nil || cb.Secret != okSecret {
		t.Fatalf("AddCallback with a secret: %+v, %v; want the secret kept", cb, err)
	}
}

func TestCallbackCRUD(t *testing.T) {
	m := member(t)
	ctx := t.Context()
	ctl := control.New(m.KV(), server.NewStore(m.KV()), control.Config{})
	before, err := m.Client().Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	cb, err := ctl.AddCallback(registry.WithCaller(ctx, "test"), registry.Callback{URL: "http://127.0.0.1:9/hook", Instance: strings.ToUpper(uuid)})
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.ValidateCallbackID(cb.ID); err != nil {
		t.Errorf("assigned ID: %v", err)
	}
	if cb.Instance != uuid {
		t.Errorf("instance %q, want it lower-cased: %q", cb.Instance, uuid)
	}
	key, err := registry.DecodeSecret(cb.Secret)
	if err != nil || len(key) != 24 {
		t.Errorf("generated secret %q: %v, %d bytes; want whsec_ and 24 bytes", cb.Secret, err, len(key))
	}
	if cb.Cursor != before.Header.Revision+1 || cb.SetBy != "test" || cb.Created.IsZero() {
		t.Errorf("added: cursor %d (store at %d before: want the next, the creation's), set by %q, created %v", cb.Cursor, before.Header.Revision, cb.SetBy, cb.Created)
	}
	// The definition and the state are stored, the secret with the
	// definition only.
	def, err := m.Client().Get(ctx, control.PrefixCallbacks+cb.ID)
	if err != nil || len(def.Kvs) != 1 {
		t.Fatalf("definition: %v %v", def, err)
	}
	var rec control.CallbackRecord
	if err := json.Unmarshal(def.Kvs[0].Value, &rec); err != nil || rec.Secret != cb.Secret || rec.URL != cb.URL {
		t.Errorf("stored definition %+v, %v", rec, err)
	}
	st, err := m.Client().Get(ctx, control.PrefixCallbackState+cb.ID)
	if err != nil || len(st.Kvs) != 1 || strings.Contains(string(st.Kvs[0].Value), "whsec_") {
		t.Fatalf("state: %v %v", st, err)
	}

	svc, err := ctl.AddCallback(ctx, registry.Callback{URL: "https://example.com/svc", Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	all, err := ctl.ListCallbacks(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %+v, %v", all, err)
	}
	for _, c := range all {
		if c.Secret != "" {
			t.Errorf("list shows the secret of %s", c.ID)
		}
	}
	// The worker's state shows through.
	// (A cursor past the callback's creation: the shared test etcd's
	// revision depends on the tests that ran before.)
	cursor := svc.Cursor + 5
	b, _ := json.Marshal(control.CallbackState{Cursor: cursor, LastError: "500 Internal Server Error", Pending: 3, Attempts: 2, Disabled: true, DisabledReason: "why"})
	if _, err := m.Client().Put(ctx, control.PrefixCallbackState+svc.ID, string(b)); err != nil {
		t.Fatal(err)
	}
	got, err := ctl.GetCallback(ctx, svc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret != "" || got.Cursor != cursor || got.LastError == "" || got.Pending != 3 || !got.Disabled || got.DisabledReason != "why" || got.Service != "svc" {
		t.Errorf("get: %+v", got)
	}

	for _, id := range []string{"", "cb_", "CB_0123456789abcdef", "cb_0123456789abcdef0", "../x"} {
		if _, err := ctl.GetCallback(ctx, id); wire.CodeOf(err) != wire.CodeBadRequest {
			t.Errorf("get %q: %v, want bad_request", id, err)
		}
		if _, err := ctl.DeleteCallback(ctx, id); wire.CodeOf(err) != wire.CodeBadRequest {
			t.Errorf("delete %q: %v, want bad_request", id, err)
		}
	}
	if got, err := ctl.GetCallback(ctx, cb.ID); err != nil || got.Cursor != cb.Cursor {
		t.Errorf("get %s: cursor %d, %v; want the creation's, %d", cb.ID, got.Cursor, err, cb.Cursor)
	}
	if _, err := ctl.GetCallback(ctx, "cb_0123456789abcdef"); wire.CodeOf(err) != wire.CodeNotFound {
		t.Errorf("get unknown: %v, want not_found", err)
	}
	if _, err := ctl.DeleteCallback(ctx, "cb_0123456789abcdef"); wire.CodeOf(err) != wire.CodeNotFound {
		t.Errorf("delete unknown: %v, want not_found", err)
	}
	if _, err := ctl.DeleteCallback(ctx, cb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.GetCallback(ctx, cb.ID); wire.CodeOf(err) != wire.CodeNotFound {
		t.Errorf("get deleted: %v, want not_found", err)
	}
	if st, _ := m.Client().Get(ctx, control.PrefixCallbackState+cb.ID, clientv3.WithCountOnly()); st.Count != 0 {
		t.Errorf("the deleted callback's state is left")
	}
	if all, _ := ctl.ListCallbacks(ctx); len(all) != 1 || all[0].ID != svc.ID {
		t.Errorf("list after delete: %+v", all)
	}
}
