package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/physarum-p2p/physarum/registry"
)

// FuzzLaunchBody posts a body to /instances: what is accepted reaches the
// Controller as a valid launch (the UUID in its lower-case form), and is
// answered 201 pending; anything else is a 4xx that writes nothing
// (fuzzServe).
func FuzzLaunchBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		fc := newFake()
		fc.services["svc"] = helloworld
		fc.launched[uuid1] = registry.LaunchedInstance{UUID: uuid1, Service: "svc", State: registry.StateRunning}
		h := New(fc, Options{MaxBody: 4096})
		status, _ := fuzzServe(t, fc, h, "POST", "/instances", body)
		if status >= 400 {
			return
		}
		c := fc.last(t)
		if status != http.StatusCreated || c.op != "Launch" {
			t.Fatalf("%q accepted with %d as %+v", body, status, c)
		}
		r := c.launch
		if err := registry.ValidateLaunch(&r); err != nil || r != c.launch {
			t.Fatalf("%q accepted an invalid launch %+v: %v", body, c.launch, err)
		}
		if c.launch.UUID == uuid1 {
			t.Fatalf("%q launched over an instance that exists", body)
		}
	})
}

// FuzzActionBody posts a body to /instances/<uuid>/actions (uuid "": an
// instance that exists): what is accepted is one of the valid actions on
// a valid UUID.
func FuzzActionBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, uuid string) {
		fc := newFake()
		fc.services["svc"] = helloworld
		fc.launched[uuid1] = registry.LaunchedInstance{UUID: uuid1, Service: "svc", State: registry.StateRunning}
		h := New(fc, Options{MaxBody: 4096})
		if uuid == "" {
			uuid = uuid1
		}
		status, _ := fuzzServe(t, fc, h, "POST", "/instances/"+url.PathEscape(uuid)+"/actions", body)
		if status >= 400 {
			return
		}
		c := fc.last(t)
		if status != http.StatusOK || c.op != "Act" || c.uuid != uuid1 || !slices.Contains(registry.Actions, c.action) {
			t.Fatalf("%q on %q accepted with %d as %+v", body, uuid, status, c)
		}
	})
}
