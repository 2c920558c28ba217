package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/registry"
)

// Prefix is the part of etcd every event comes from; a watch that feeds
// FromWatch must cover all of it (WithPrefix), so that the events of a
// revision are numbered the same by every reader.
const Prefix = "/physarum/"

// The key prefixes that are events, and their topics. Other prefixes
// under Prefix (leases, names, members, the election, the reconciler's
// and the callbacks' own state, the versions kept of each service's
// definition) are bookkeeping: they are skipped, and not counted in an
// event's id. (A new version is its definition's "updated" event, whose
// object carries the Version.)
var topics = []struct{ prefix, topic string }{
	{"/physarum/services/", registry.TopicService},
	{"/physarum/desired/", registry.TopicDesired},
	{"/physarum/computes/", registry.TopicCompute},
	{"/physarum/nodes/", registry.TopicNode},
	{"/physarum/instances/", registry.TopicInstance},
	{"/physarum/launched/", registry.TopicLaunched},
	{"/physarum/autoscale/", registry.TopicAutoscale},
	{"/physarum/rollouts/", registry.TopicRollout},
}

// Topic returns the topic and event key of an etcd key: "service" and
// the service's name for /physarum/services/<name>, "instance" and
// "<service>/<id>" for /physarum/instances/<service>/<id>, and so on
// (registry.Event's Key). ok is false for a key that is no event's.
func Topic(etcdKey string) (topic, key string, ok bool) {
	for _, t := range topics {
		if k, found := strings.CutPrefix(etcdKey, t.prefix); found && k != "" {
			return t.topic, k, true
		}
	}
	return "", "", false
}

// liveStates are an instance record's states while it is meant to run:
// deleted in one of them, the instance was lost (its node's lease ran
// out, or its record was removed under it). An allocator's orderly stop
// writes stopping first, then deletes.
var liveStates = map[string]bool{
	registry.StatePending:  true,
	registry.StateStarting: true,
	registry.StateRunning:  true,
}

// FromWatch maps the events of one etcd watch response (a watch on
// Prefix, WithPrefix and WithPrevKV) to registry events, in etcd's order.
// Index is the revision of each change; ID is "<index>-<n>", n counting
// from 0 the events of that revision that have a topic, in etcd's order,
// so that a change keeps its id however often it is read (etcd never
// splits a revision between watch responses). Type is created (a key's
// first version), updated or deleted; an instance record deleted while
// its previous version was pending, starting or running is lost. Object
// is the value after the change, or before it for deleted and lost
// (without WithPrevKV a deletion has none); a value that is not JSON is
// left out. Time is now: etcd keeps no time of its own.
func FromWatch(evs []*clientv3.Event, now time.Time) []registry.Event {
	out := make([]registry.Event, 0, len(evs))
	var rev int64
	n := 0
	for _, ev := range evs {
		if ev.Kv == nil {
			continue
		}
		topic, key, ok := Topic(string(ev.Kv.Key))
		if !ok {
			continue
		}
		if ev.Kv.ModRevision != rev {
			rev, n = ev.Kv.ModRevision, 0
		}
		if topic == registry.TopicNode && ev.Type == clientv3.EventTypePut && ev.PrevKv != nil && onlyMeasuresChanged(ev.PrevKv.Value, ev.Kv.Value) {
			// A heartbeat that carries a busy node's new load, or its
			// new RTTs to other nodes: not a change of the node worth an
			// event (a hundred nodes would make thirty a second); its
			// record shows them.
			continue
		}
		e := registry.Event{
			ID: registry.EventID(rev, n), Index: rev, Time: now,
			Topic: topic, Key: key,
		}
		n++
		switch {
		case ev.Type == clientv3.EventTypeDelete:
			e.Type = registry.EventDeleted
			if ev.PrevKv != nil {
				e.Object = rawJSON(ev.PrevKv.Value)
				if topic == registry.TopicInstance && liveStates[instanceState(ev.PrevKv.Value)] {
					e.Type = registry.EventLost
				}
			}
		case ev.Kv.CreateRevision == ev.Kv.ModRevision:
			e.Type = registry.EventCreated
			e.Object = rawJSON(ev.Kv.Value)
		default:
			e.Type = registry.EventUpdated
			e.Object = rawJSON(ev.Kv.Value)
		}
		out = append(out, e)
	}
	return out
}

// onlyMeasuresChanged reports whether two versions of a node record
// differ only in what the node measures (its load, its RTTs) and the time
// of the change.
func onlyMeasuresChanged(before, after []byte) bool {
	var a, b registry.Node
	if json.Unmarshal(before, &a) != nil || json.Unmarshal(after, &b) != nil {
		return false
	}
	a.Load, b.Load = nil, nil
	a.RTTs, b.RTTs = nil, nil
	a.Updated, b.Updated = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// rawJSON returns v when it is one JSON value, else nil.
func rawJSON(v []byte) json.RawMessage {
	if len(v) == 0 || !json.Valid(v) {
		return nil
	}
	return json.RawMessage(v)
}

// instanceState reads an instance record's State ("" when it has none).
func instanceState(v []byte) string {
	var r struct {
		State string `json:"State"`
	}
	_ = json.Unmarshal(v, &r)
	return r.State
}
