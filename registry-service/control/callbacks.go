package control

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/registry"
)

// Callbacks (SPEC.md section 12): the definitions and their delivery
// state, as stored; registry-service/callbacks delivers them. A callback
// is two keys: its definition at PrefixCallbacks+id (written once, by
// AddCallback, with the secret the deliveries are signed with) and its
// delivery state at PrefixCallbackState+id (the cursor, written by the
// delivery worker after each delivery and each failure).

// CallbackRecord is a callback's definition as stored, secret included.
type CallbackRecord struct {
	ID       string    `json:"id"`
	URL      string    `json:"url"`
	Instance string    `json:"instance,omitempty"`
	Service  string    `json:"service,omitempty"`
	Secret   string    `json:"secret"`
	Created  time.Time `json:"created"`
	SetBy    string    `json:"set_by,omitempty"`
}

// Callback is the record as the API shows it: without its secret, and
// without delivery state.
func (r CallbackRecord) Callback() registry.Callback {
	return registry.Callback{ID: r.ID, URL: r.URL, Instance: r.Instance, Service: r.Service, Created: r.Created, SetBy: r.SetBy}
}

// CallbackState is a callback's delivery state as stored.
type CallbackState struct {
	// Cursor is the index of the last event delivered; every event the
	// callback selects up to it has been delivered, but for those of
	// Cursor's own revision after LastID when LastID is of it. It is
	// never below the revision that created the callback (its
	// definition's create revision), which a stored 0 stands for: the
	// callback receives the events after its creation.
	Cursor int64 `json:"cursor"`
	// LastID is the ID ("<index>-<n>") of the last event delivered.
	LastID string `json:"last_id,omitempty"`
	// Pending is how many events the worker had read for the callback
	// and not yet delivered when it last wrote this state (see
	// registry-service/callbacks).
	Pending     int       `json:"pending"`
	Delivered   int64     `json:"delivered"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError, FailingSince and Attempts describe the failures in a row
	// at the event being delivered; LastAttempt is when the last one
	// failed. A success clears them.
	LastError    string    `json:"last_error,omitempty"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	Attempts     int       `json:"attempts,omitempty"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	// Disabled stops delivery for good (after failing for a day), for the
	// reason said.
	Disabled       bool   `json:"disabled,omitempty"`
	DisabledReason string `json:"disabled_reason,omitempty"`
	// Skipped says which events were never delivered (compacted away
	// before delivery reached them).
	Skipped string `json:"skipped,omitempty"`
}

// From returns the state with its cursor at least created, the revision
// that created the callback.
func (s CallbackState) From(created int64) CallbackState {
	s.Cursor = max(s.Cursor, created)
	return s
}

// Apply sets a callback's delivery fields from the state.
func (s CallbackState) Apply(c *registry.Callback) {
	c.Cursor, c.Pending, c.Delivered, c.LastSuccess = s.Cursor, s.Pending, s.Delivered, s.LastSuccess
	c.LastError, c.FailingSince = s.LastError, s.FailingSince
	c.Disabled, c.DisabledReason, c.Skipped = s.Disabled, s.DisabledReason, s.Skipped
}

var _ registry.Callbacks = (*Control)(nil)

// secretKeyLen is the length of a generated secret's key.
const secretKeyLen = 24

// NewSecret returns a new callback secret: "whsec_" and the base64 of 24
// random bytes.
func NewSecret() string {
	b := make([]byte, secretKeyLen)
	_, _ = rand.Read(b)
	return registry.SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

func newCallbackID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return registry.CallbackIDPrefix + hex.EncodeToString(b)
}

// AddCallback registers a callback for one launched instance (Instance,
// a UUID: it need not exist yet, so that a launch can create its callback
// first), one service (Service, a valid name, existing or not) or every
// event (neither). It receives the events after the store's revision at
// its creation. Without a Secret, one is generated. The answer holds the
// secret, this once.
func (c *Control) AddCallback(ctx context.Context, cb registry.Callback) (registry.Callback, error) {
	if err := registry.ValidateCallback(&cb); err != nil {
		return registry.Callback{}, badRequest(err)
	}
	rec := CallbackRecord{
		URL: cb.URL, Instance: cb.Instance, Service: cb.Service, Secret: cb.Secret,
		Created: c.cfg.Now().UTC(), SetBy: registry.CallerOf(ctx),
	}
	if rec.Secret == "" {
		rec.Secret = NewSecret()
	}
	// The cursor starts at the revision that creates the callback (its
	// definition's create revision, which a stored 0 stands for): it
	// receives the events after it.
	var st CallbackState
	stb, _ := json.Marshal(st)
	for range 3 { // a colliding ID (64 random bits) is all but impossible: try another
		rec.ID = newCallbackID()
		b, _ := json.Marshal(rec)
		resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(PrefixCallbacks+rec.ID), "=", 0)).
			Then(clientv3.OpPut(PrefixCallbacks+rec.ID, string(b)), clientv3.OpPut(PrefixCallbackState+rec.ID, string(stb))).Commit()
		if err != nil {
			return registry.Callback{}, unavailable("add callback", err)
		}
		if resp.Succeeded {
			out := rec.Callback()
			out.Secret = rec.Secret
			st.Cursor = resp.Header.Revision
			st.Apply(&out)
			c.log.Info("callback added", "callback", rec.ID, "url", rec.URL, "instance", rec.Instance, "service", rec.Service, "by", rec.SetBy)
			return out, nil
		}
	}
	return registry.Callback{}, conflict("could not choose a free callback ID")
}

// ListCallbacks lists every callback with its delivery state (never a
// secret), by ID.
func (c *Control) ListCallbacks(ctx context.Context) ([]registry.Callback, error) {
	resp, err := c.cli.Txn(ctx).Then(
		clientv3.OpGet(PrefixCallbacks, clientv3.WithPrefix()),
		clientv3.OpGet(PrefixCallbackState, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, unavailable("read callbacks", err)
	}
	states := map[string]CallbackState{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var st CallbackState
		if json.Unmarshal(kv.Value, &st) == nil {
			states[strings.TrimPrefix(string(kv.Key), PrefixCallbackState)] = st
		}
	}
	out := []registry.Callback{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var rec CallbackRecord
		if json.Unmarshal(kv.Value, &rec) != nil || rec.ID == "" {
			continue
		}
		cb := rec.Callback()
		states[rec.ID].From(kv.CreateRevision).Apply(&cb)
		out = append(out, cb)
	}
	slices.SortFunc(out, func(a, b registry.Callback) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// GetCallback reads one callback with its delivery state (never its
// secret).
func (c *Control) GetCallback(ctx context.Context, id string) (registry.Callback, error) {
	if err := registry.ValidateCallbackID(id); err != nil {
		return registry.Callback{}, badRequest(err)
	}
	resp, err := c.cli.Txn(ctx).Then(clientv3.OpGet(PrefixCallbacks+id), clientv3.OpGet(PrefixCallbackState+id)).Commit()
	if err != nil {
		return registry.Callback{}, unavailable("read callback", err)
	}
	defs := resp.Responses[0].GetResponseRange().Kvs
	var rec CallbackRecord
	if len(defs) == 0 || json.Unmarshal(defs[0].Value, &rec) != nil {
		return registry.Callback{}, notFound("no callback %s", id)
	}
	cb := rec.Callback()
	var st CallbackState
	if sts := resp.Responses[1].GetResponseRange().Kvs; len(sts) > 0 {
		_ = json.Unmarshal(sts[0].Value, &st)
	}
	st.From(defs[0].CreateRevision).Apply(&cb)
	return cb, nil
}

// DeleteCallback removes a callback's definition and delivery state; its
// deliveries stop (an attempt in flight is abandoned).
func (c *Control) DeleteCallback(ctx context.Context, id string) (string, error) {
	if err := registry.ValidateCallbackID(id); err != nil {
		return "", badRequest(err)
	}
	resp, err := c.cli.Txn(ctx).Then(clientv3.OpDelete(PrefixCallbacks+id), clientv3.OpDelete(PrefixCallbackState+id)).Commit()
	if err != nil {
		return "", unavailable("delete callback", err)
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
		return "", notFound("no callback %s", id)
	}
	c.log.Info("callback deleted", "callback", id, "by", registry.CallerOf(ctx))
	return "deleted callback " + id, nil
}
