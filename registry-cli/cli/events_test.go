package cli

import (
	"encoding/json"
	"testing"

	"github.com/physarum-p2p/physarum/registry"
)

func TestEventLine(t *testing.T) {
	for _, c := range []struct {
		topic, typ, key, object, want string
	}{
		{"instance", "updated", "hello/hello-1a2b3c4d", `{"ID":"hello-1a2b3c4d","State":"running"}`, "12345 instance updated hello/hello-1a2b3c4d running"},
		{"instance", "lost", "hello/hello-1", `{"State":"running"}`, "12345 instance lost hello/hello-1 running"},
		{"launched", "created", "6f1c2d3e-0000-4000-8000-000000000001", `{"state":"pending"}`, "12345 launched created 6f1c2d3e-0000-4000-8000-000000000001 pending"},
		{"node", "created", "12D3KooW", `{"PeerID":"12D3KooW","Name":"site-a"}`, "12345 node created 12D3KooW site-a"},
		{"desired", "updated", "hello/physarum", `{"service":"hello","number":3}`, "12345 desired updated hello/physarum 3"},
		{"desired", "updated", "hello/physarum", `{"service":"hello","number":0}`, "12345 desired updated hello/physarum 0"},
		{"compute", "created", "site-a", `{"name":"site-a","connector":"physarum:labels?site=a"}`, "12345 compute created site-a physarum:labels?site=a"},
		{"service", "updated", "hello", `{"Image":"x"}`, "12345 service updated hello"},
		{"service", "deleted", "hello", ``, "12345 service deleted hello"},
		{"instance", "updated", "hello/hello-1", `[1,2]`, "12345 instance updated hello/hello-1"},
	} {
		e := registry.Event{Index: 12345, Topic: c.topic, Type: c.typ, Key: c.key}
		if c.object != "" {
			e.Object = json.RawMessage(c.object)
		}
		if got := eventLine(e); got != c.want {
			t.Errorf("eventLine = %q, want %q", got, c.want)
		}
	}
}
