package registry_test

import (
	"encoding/json"
	"testing"

	"github.com/physarum-p2p/physarum/registry"
)

const cbUUID = "0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"

// The filter of a callback, as the reference documents it.
func TestCallbackSelects(t *testing.T) {
	ev := func(topic, key, object string) registry.Event {
		e := registry.Event{ID: "7-0", Index: 7, Topic: topic, Type: registry.EventUpdated, Key: key}
		if object != "" {
			e.Object = json.RawMessage(object)
		}
		return e
	}
	launchedHello := ev(registry.TopicLaunched, cbUUID, `{"uuid":"`+cbUUID+`","service":"hello"}`)
	launchedOther := ev(registry.TopicLaunched, "7f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f", `{"service":"web"}`)
	events := map[string]registry.Event{
		"service hello":        ev(registry.TopicService, "hello", `{}`),
		"service hello-2":      ev(registry.TopicService, "hello-2", `{}`),
		"desired hello":        ev(registry.TopicDesired, "hello/physarum", `{}`),
		"desired hello-2":      ev(registry.TopicDesired, "hello-2/physarum", `{}`),
		"instance hello":       ev(registry.TopicInstance, "hello/hello-1a2b", `{}`),
		"instance of the uuid": ev(registry.TopicInstance, "hello/"+cbUUID, `{}`),
		"instance web":         ev(registry.TopicInstance, "web/web-1", `{}`),
		"launched hello":       launchedHello,
		"launched web":         launchedOther,
		"launched, no object":  ev(registry.TopicLaunched, "x", ""),
		"node":                 ev(registry.TopicNode, "12D3KooW", `{}`),
		"compute":              ev(registry.TopicCompute, "site-a", `{}`),
		"heartbeat":            {Index: 9, Type: registry.EventHeartbeat},
	}
	for _, c := range []struct {
		cb   registry.Callback
		want []string
	}{
		{registry.Callback{Instance: cbUUID}, []string{"instance of the uuid", "launched hello"}},
		{registry.Callback{Service: "hello"}, []string{"service hello", "desired hello", "instance hello", "instance of the uuid", "launched hello"}},
		{registry.Callback{}, []string{"service hello", "service hello-2", "desired hello", "desired hello-2", "instance hello",
			"instance of the uuid", "instance web", "launched hello", "launched web", "launched, no object", "node", "compute"}},
	} {
		want := map[string]bool{}
		for _, w := range c.want {
			want[w] = true
		}
		for name, e := range events {
			if got := c.cb.Selects(e); got != want[name] {
				t.Errorf("callback %+v selects %s: %v, want %v", c.cb, name, got, want[name])
			}
		}
	}
}

func TestValidateCallback(t *testing.T) {
	cb := registry.Callback{URL: "https://example.com/h?x=1", Instance: "0B7D3C1E-5F0A-4C2B-9E8D-7A6B5C4D3E2F"}
	if err := registry.ValidateCallback(&cb); err != nil || cb.Instance != cbUUID {
		t.Fatalf("ValidateCallback: %v, instance %q", err, cb.Instance)
	}
	for _, u := range []string{"http://[::1]:8080/x", "https://h", "http://10.0.0.1"} {
		if err := registry.ValidateCallbackURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"", "h/x", "//h/x", "mailto:a@b", "http://", "http://:80/", "https://u@h/", "http://h/\x7f"} {
		if err := registry.ValidateCallbackURL(u); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	for _, s := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAAAAAAAAAAAAAAAAAAAAA=="} {
		if _, err := registry.DecodeSecret(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, id := range []string{"cb_0123456789abcdef"} {
		if err := registry.ValidateCallbackID(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}
