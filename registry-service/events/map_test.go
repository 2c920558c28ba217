package events_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/events"
)

func put(key, value string, create, mod int64) *clientv3.Event {
	return &clientv3.Event{Type: clientv3.EventTypePut, Kv: &mvccpb.KeyValue{
		Key: []byte(key), Value: []byte(value), CreateRevision: create, ModRevision: mod}}
}

// putOver is a change at mod of a key that held prev.
func putOver(key, prev, value string, create, mod int64) *clientv3.Event {
	ev := put(key, value, create, mod)
	ev.PrevKv = &mvccpb.KeyValue{Key: []byte(key), Value: []byte(prev), CreateRevision: create, ModRevision: mod - 1}
	return ev
}

// del is a deletion at rev; prev (when not "") is the value before it.
func del(key, prev string, rev int64) *clientv3.Event {
	ev := &clientv3.Event{Type: clientv3.EventTypeDelete, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev}}
	if prev != "" {
		ev.PrevKv = &mvccpb.KeyValue{Key: []byte(key), Value: []byte(prev), ModRevision: rev - 1}
	}
	return ev
}

func inst(state string) string {
	return fmt.Sprintf(`{"ID":"hello-1","Service":"hello","State":%q}`, state)
}

func TestFromWatch(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	type want struct{ id, topic, typ, key, object string }
	cases := []struct {
		name string
		evs  []*clientv3.Event
		want []want
	}{
		{"service created", []*clientv3.Event{put("/physarum/services/hello", `{"Image":"x"}`, 7, 7)},
			[]want{{"7-0", "service", "created", "hello", `{"Image":"x"}`}}},
		{"service updated", []*clientv3.Event{put("/physarum/services/hello", `{"Image":"y"}`, 7, 9)},
			[]want{{"9-0", "service", "updated", "hello", `{"Image":"y"}`}}},
		{"service deleted with its previous value", []*clientv3.Event{del("/physarum/services/hello", `{"Image":"y"}`, 10)},
			[]want{{"10-0", "service", "deleted", "hello", `{"Image":"y"}`}}},
		{"deleted without a previous value", []*clientv3.Event{del("/physarum/services/hello", "", 10)},
			[]want{{"10-0", "service", "deleted", "hello", ""}}},
		{"desired, compute, node, launched keys", []*clientv3.Event{
			put("/physarum/desired/hello/site-a", `{"Number":3}`, 11, 11),
			put("/physarum/computes/site-a", `{"Name":"site-a"}`, 12, 12),
			put("/physarum/nodes/12D3KooWabc", `{"Name":"n1"}`, 12, 13),
			put("/physarum/launched/6f1c2d3e-0000-4000-8000-000000000001", `{"state":"pending"}`, 14, 14),
		}, []want{
			{"11-0", "desired", "created", "hello/site-a", `{"Number":3}`},
			{"12-0", "compute", "created", "site-a", `{"Name":"site-a"}`},
			{"13-0", "node", "updated", "12D3KooWabc", `{"Name":"n1"}`},
			{"14-0", "launched", "created", "6f1c2d3e-0000-4000-8000-000000000001", `{"state":"pending"}`},
		}},
		{"instance stopped in order: stopping, then deleted", []*clientv3.Event{
			put("/physarum/instances/hello/hello-1", inst("stopping"), 20, 21),
			del("/physarum/instances/hello/hello-1", inst("stopping"), 22),
		}, []want{
			{"21-0", "instance", "updated", "hello/hello-1", inst("stopping")},
			{"22-0", "instance", "deleted", "hello/hello-1", inst("stopping")},
		}},
		{"instance deleted while live is lost", []*clientv3.Event{
			del("/physarum/instances/hello/hello-1", inst("running"), 30),
			del("/physarum/instances/hello/hello-2", inst("starting"), 31),
			del("/physarum/instances/hello/hello-3", inst("pending"), 32),
			del("/physarum/instances/hello/hello-4", inst("failed"), 33),
			del("/physarum/instances/hello/hello-5", inst("stopped"), 34),
		}, []want{
			{"30-0", "instance", "lost", "hello/hello-1", inst("running")},
			{"31-0", "instance", "lost", "hello/hello-2", inst("starting")},
			{"32-0", "instance", "lost", "hello/hello-3", inst("pending")},
			{"33-0", "instance", "deleted", "hello/hello-4", inst("failed")},
			{"34-0", "instance", "deleted", "hello/hello-5", inst("stopped")},
		}},
		{"a lease running out: one revision, numbered in etcd's order, bookkeeping skipped", []*clientv3.Event{
			del("/physarum/leases/12D3KooWabc", "12345", 40),
			del("/physarum/nodes/12D3KooWabc", `{"Name":"n1"}`, 40),
			del("/physarum/names/n1", "12D3KooWabc", 40),
			del("/physarum/instances/hello/hello-1", inst("running"), 40),
			del("/physarum/instances/web/web-1", inst("stopping"), 40),
			put("/physarum/services/hello", `{}`, 3, 41),
		}, []want{
			{"40-0", "node", "deleted", "12D3KooWabc", `{"Name":"n1"}`},
			{"40-1", "instance", "lost", "hello/hello-1", inst("running")},
			{"40-2", "instance", "deleted", "web/web-1", inst("stopping")},
			{"41-0", "service", "updated", "hello", `{}`},
		}},
		{"values that are not JSON are left out", []*clientv3.Event{
			put("/physarum/services/odd", `not json`, 50, 50),
			put("/physarum/services/empty", ``, 51, 51),
		}, []want{
			{"50-0", "service", "created", "odd", ""},
			{"51-0", "service", "created", "empty", ""},
		}},
		{"a node heartbeat that changes only its load is no event; one that changes more is", []*clientv3.Event{
			putOver("/physarum/nodes/12D3KooWabc", `{"Name":"n1","FreeCPU":500,"Updated":"2025-01-01T00:00:00Z"}`,
				`{"Name":"n1","FreeCPU":500,"Updated":"2025-01-01T00:00:03Z","Load":[{"ID":"a","Service":"s","RPS":10,"InFlight":1}]}`, 70, 71),
			putOver("/physarum/nodes/12D3KooWabc", `{"Name":"n1","FreeCPU":500,"Load":[{"ID":"a","Service":"s","RPS":10,"InFlight":1}]}`,
				`{"Name":"n1","FreeCPU":400,"Load":[{"ID":"a","Service":"s","RPS":10,"InFlight":1}]}`, 70, 72),
		}, []want{
			{"72-0", "node", "updated", "12D3KooWabc", `{"Name":"n1","FreeCPU":400,"Load":[{"ID":"a","Service":"s","RPS":10,"InFlight":1}]}`},
		}},
		{"a node heartbeat that changes only its RTTs is no event", []*clientv3.Event{
			putOver("/physarum/nodes/12D3KooWabc", `{"Name":"n1","RTTs":[{"PeerID":"12D3KooWdef","RTT":12.5}]}`,
				`{"Name":"n1","RTTs":[{"PeerID":"12D3KooWxyz","RTT":3.1},{"PeerID":"12D3KooWdef","RTT":20}]}`, 70, 73),
			putOver("/physarum/nodes/12D3KooWabc", `{"Name":"n1","RTTs":[{"PeerID":"12D3KooWdef","RTT":12.5}]}`,
				`{"Name":"n2","RTTs":[{"PeerID":"12D3KooWdef","RTT":12.5}]}`, 70, 74),
		}, []want{
			{"74-0", "node", "updated", "12D3KooWabc", `{"Name":"n2","RTTs":[{"PeerID":"12D3KooWdef","RTT":12.5}]}`},
		}},
		{"autoscale policies and decisions", []*clientv3.Event{
			put("/physarum/autoscale/hello/policy", `{"policy":{"min":1}}`, 80, 80),
			put("/physarum/autoscale/hello/decision", `{"last":{}}`, 81, 81),
		}, []want{
			{"80-0", "autoscale", "created", "hello/policy", `{"policy":{"min":1}}`},
			{"81-0", "autoscale", "created", "hello/decision", `{"last":{}}`},
		}},
		{"keys outside the topics, and bare prefixes, are no events", []*clientv3.Event{
			put("/physarum/election/reconciler/abc", "x", 60, 60),
			put("/physarum/reconcile/hello/physarum", `{}`, 61, 61),
			put("/physarum/callbacks/abc", `{}`, 62, 62),
			put("/physarum/callback-state/abc", `{}`, 63, 63),
			put("/physarum/members/abc", `{}`, 64, 64),
			put("/physarum/services/", `{}`, 65, 65),
			put("/other/services/x", `{}`, 66, 66),
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := events.FromWatch(c.evs, now)
			var gotW []want
			for _, e := range got {
				if !e.Time.Equal(now) {
					t.Errorf("%s: time %v, want %v", e.ID, e.Time, now)
				}
				if idx, _, ok := registry.ParseEventID(e.ID); !ok || idx != e.Index {
					t.Errorf("id %q does not carry index %d", e.ID, e.Index)
				}
				gotW = append(gotW, want{e.ID, e.Topic, e.Type, e.Key, string(e.Object)})
			}
			if !reflect.DeepEqual(gotW, c.want) {
				t.Errorf("got\n%v\nwant\n%v", gotW, c.want)
			}
		})
	}
}

// The same changes read again (a reader resuming, the callbacks' worker
// after a leader change) carry the same ids, whatever the topic filter
// applied afterwards.
func TestFromWatchIDsAreStable(t *testing.T) {
	evs := []*clientv3.Event{
		put("/physarum/instances/a/a-1", inst("running"), 5, 5),
		put("/physarum/leases/x", "1", 5, 5),
		put("/physarum/instances/b/b-1", inst("running"), 5, 5),
		put("/physarum/services/a", `{}`, 6, 6),
	}
	first := events.FromWatch(evs, time.Now())
	again := events.FromWatch(evs, time.Now().Add(time.Hour))
	for i := range first {
		if first[i].ID != again[i].ID {
			t.Errorf("event %d: id %s, then %s", i, first[i].ID, again[i].ID)
		}
	}
	var ids []string
	for _, e := range first {
		if e.Matches([]string{"instance:b"}) {
			ids = append(ids, e.ID)
		}
	}
	if !reflect.DeepEqual(ids, []string{"5-1"}) {
		t.Errorf("instance:b's events: %v, want [5-1] (numbered before filtering)", ids)
	}
	b, err := json.Marshal(first[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "index", "time", "topic", "type", "key", "object"} {
		if _, ok := m[f]; !ok {
			t.Errorf("event JSON %s has no %q", b, f)
		}
	}
}

func TestTopic(t *testing.T) {
	for key, want := range map[string][2]string{
		"/physarum/services/hello":           {"service", "hello"},
		"/physarum/desired/hello/physarum":   {"desired", "hello/physarum"},
		"/physarum/computes/site-a":          {"compute", "site-a"},
		"/physarum/nodes/12D3Koo":            {"node", "12D3Koo"},
		"/physarum/instances/hello/hello-ab": {"instance", "hello/hello-ab"},
		"/physarum/launched/0000":            {"launched", "0000"},
		"/physarum/leases/12D3Koo":           {"", ""},
		"/physarum/callback-state/x":         {"", ""},
	} {
		topic, k, ok := events.Topic(key)
		if topic != want[0] || k != want[1] || ok != (want[0] != "") {
			t.Errorf("Topic(%q) = %q, %q, %v; want %q, %q", key, topic, k, ok, want[0], want[1])
		}
	}
}
