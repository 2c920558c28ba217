package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// Key layout of desired state, beside the registry's own records (see
// registry-service/server's store): one key per desired count, per
// operator-defined compute, and per reconciled (service, compute) for what
// the reconciler learnt (failures, backoff), so that any registry-service
// can report it and a new leader carries on from it.
const (
	// PrefixDesired holds registry.Desired at <prefix><service>/<compute>.
	PrefixDesired = "/physarum/desired/"
	// PrefixComputes holds storedCompute at <prefix><name>.
	PrefixComputes = "/physarum/computes/"
	// PrefixReconcile holds keyState at <prefix><service>/<compute>.
	PrefixReconcile = "/physarum/reconcile/"
	// PrefixLaunched holds a launched instance's record (what the caller
	// asked for, and what became of it) at <prefix><uuid>.
	PrefixLaunched = "/physarum/launched/"
	// PrefixCallbacks holds a callback's definition at <prefix><id>.
	PrefixCallbacks = "/physarum/callbacks/"
	// PrefixCallbackState holds a callback's delivery state (its cursor)
	// at <prefix><id>.
	PrefixCallbackState = "/physarum/callback-state/"
	// PrefixVersions holds the versions of each service's definition the
	// registry keeps (registry.ServiceVersion, the last
	// registry.ServiceVersionsKept of them, the current one included) at
	// <prefix><service>/<version>, the version zero-padded to ten digits so
	// that the keys list in order (VersionKey). registry-service/server's
	// store writes them in the transaction that writes the definition, and
	// deletes them with it; they are bookkeeping, not events (the
	// definition's own key is the service's event).
	PrefixVersions = "/physarum/service-versions/"
	// electionPrefix is the reconciler's leader election.
	electionPrefix = "/physarum/election/reconciler"
)

// VersionKey is the key of version v of service's definition under
// PrefixVersions.
func VersionKey(service string, v int) string {
	return fmt.Sprintf("%s%s/%010d", PrefixVersions, service, v)
}

func desiredKey(service, compute string) string   { return PrefixDesired + service + "/" + compute }
func reconcileKey(service, compute string) string { return PrefixReconcile + service + "/" + compute }

// storedCompute is an operator's compute as kept in etcd.
type storedCompute struct {
	registry.Compute
	SetBy string    `json:"set_by"`
	SetAt time.Time `json:"set_at"`
}

// keyState is what the reconciler keeps about one (service, compute).
type keyState struct {
	// Failures counts start failures in a row; it sets the backoff.
	Failures     int       `json:"failures,omitempty"`
	LastFailure  string    `json:"last_failure,omitempty"`
	LastFailedAt time.Time `json:"last_failed_at,omitzero"`
	BackoffUntil time.Time `json:"backoff_until,omitzero"`
	// Message says what else stands in the way.
	Message string `json:"message,omitempty"`
	// ConnectorRunning is the running_resources an external connector
	// last reported.
	ConnectorRunning int `json:"connector_running,omitempty"`
}

// pair names a (service, compute).
type pair struct{ service, compute string }

func (p pair) String() string { return p.service + "@" + p.compute }

// splitPair reads "<service>/<compute>" after a prefix.
func splitPair(key, prefix string) (pair, bool) {
	s, c, ok := strings.Cut(strings.TrimPrefix(key, prefix), "/")
	return pair{s, c}, ok && s != "" && c != ""
}

// listDesired reads every desired count ("" service: all), by pair.
func listDesired(ctx context.Context, cli *clientv3.Client, service string) (map[pair]registry.Desired, error) {
	prefix := PrefixDesired
	if service != "" {
		prefix += service + "/"
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("read desired counts", err)
	}
	out := make(map[pair]registry.Desired, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, ok := splitPair(string(kv.Key), PrefixDesired)
		var d registry.Desired
		if ok && json.Unmarshal(kv.Value, &d) == nil {
			d.Revision = kv.ModRevision
			out[p] = d
		}
	}
	return out, nil
}

// listStates reads the reconciler's states ("" service: all), by pair.
func listStates(ctx context.Context, cli *clientv3.Client, service string) (map[pair]keyState, error) {
	prefix := PrefixReconcile
	if service != "" {
		prefix += service + "/"
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("read reconciler state", err)
	}
	out := make(map[pair]keyState, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, ok := splitPair(string(kv.Key), PrefixReconcile)
		var st keyState
		if ok && json.Unmarshal(kv.Value, &st) == nil {
			out[p] = st
		}
	}
	return out, nil
}

// listOperatorComputes reads the computes operators defined, by name.
func listOperatorComputes(ctx context.Context, cli *clientv3.Client) (map[string]storedCompute, error) {
	resp, err := cli.Get(ctx, PrefixComputes, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("read computes", err)
	}
	out := make(map[string]storedCompute, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var c storedCompute
		if json.Unmarshal(kv.Value, &c) == nil && c.Name != "" {
			out[c.Name] = c
		}
	}
	return out, nil
}

func putJSON(ctx context.Context, cli *clientv3.Client, key string, v any) error {
	_, err := putJSONRev(ctx, cli, key, v)
	return err
}

// putJSONRev writes v at key and returns the revision of the write.
func putJSONRev(ctx context.Context, cli *clientv3.Client, key string, v any) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	resp, err := cli.Put(ctx, key, string(b))
	if err != nil {
		return 0, unavailable("write "+key, err)
	}
	return resp.Header.Revision, nil
}

// unavailable wraps an etcd failure as a structured error a client can
// fail over on.
func unavailable(action string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return wire.Errorf(wire.CodeTimeout, "%s: %v", action, err)
	}
	return wire.Errorf(wire.CodeUnavailable, "%s: %v", action, err)
}

func badRequest(err error) error {
	return &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}
}

func notFound(format string, args ...any) error {
	return wire.Errorf(wire.CodeNotFound, format, args...)
}

func conflict(format string, args ...any) error {
	return wire.Errorf(wire.CodeConflict, "%s", fmt.Sprintf(format, args...))
}
