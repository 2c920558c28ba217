package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

const uuid1 = "0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"

// The lifecycle's routes over the fake: launch under a chosen UUID (its
// upper-case form lower-cased) and an assigned one, a duplicate refused,
// list (all, by service), read, act and forget, each answer as the
// Controller gave it.
func TestInstanceRoutes(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	f.services["other"] = helloworld
	h := New(f, Options{})

	var li registry.LaunchedInstance
	answer(t, send(t, h, "POST", "/instances", `{"uuid": "`+strings.ToUpper(uuid1)+`", "service": "svc", "compute": "site-a", "callback": "https://example.com/hook"}`), http.StatusCreated, &li)
	if li.UUID != uuid1 || li.State != registry.StatePending || li.Service != "svc" || li.Compute != "site-a" || li.CallbackSecret == "" {
		t.Fatalf("POST /instances answered %+v", li)
	}
	want := registry.LaunchRequest{UUID: uuid1, Service: "svc", Compute: "site-a", Callback: "https://example.com/hook"}
	if c := f.last(t); c.op != "Launch" || c.launch != want || c.caller != "http 127.0.0.1" || c.deadline <= 0 {
		t.Fatalf("the Controller got %+v, want Launch %+v", c, want)
	}
	// Without a UUID, one is assigned; compute defaults to the network.
	var other registry.LaunchedInstance
	answer(t, send(t, h, "POST", "/instances", `{"service": "other"}`), http.StatusCreated, &other)
	if other.UUID == "" || other.Compute != registry.ComputePhysarum {
		t.Fatalf("POST /instances without a uuid answered %+v", other)
	}
	// A UUID in use: 409, nothing changed.
	msg := refusal(t, send(t, h, "POST", "/instances", `{"uuid": "`+uuid1+`", "service": "other"}`), http.StatusConflict, wire.CodeConflict)
	if !strings.Contains(msg, uuid1) {
		t.Fatalf("409 %q does not name the UUID", msg)
	}
	if f.launched[uuid1].Service != "svc" {
		t.Fatalf("a refused launch replaced the instance: %+v", f.launched[uuid1])
	}
	refusal(t, send(t, h, "POST", "/instances", `{"service": "nosuch"}`), http.StatusNotFound, wire.CodeNotFound)

	var list []registry.LaunchedInstance
	answer(t, send(t, h, "GET", "/instances", ""), http.StatusOK, &list)
	if len(list) != 2 {
		t.Fatalf("GET /instances answered %+v", list)
	}
	for _, li := range list {
		if li.CallbackSecret != "" {
			t.Fatalf("GET /instances shows a callback's secret: %+v", li)
		}
	}
	answer(t, send(t, h, "GET", "/instances?service=svc", ""), http.StatusOK, &list)
	if len(list) != 1 || list[0].UUID != uuid1 {
		t.Fatalf("GET /instances?service=svc answered %+v", list)
	}
	if c := f.last(t); c.op != "ListLaunched" || c.service != "svc" {
		t.Fatalf("the Controller got %+v", c)
	}
	// None: an empty array, not null.
	w := send(t, h, "GET", "/instances?service=nosuch", "")
	if got := w.Body.String(); got != "[]\n" {
		t.Fatalf("GET /instances of no instance answered %q", got)
	}

	li = registry.LaunchedInstance{}
	answer(t, send(t, h, "GET", "/instances/"+strings.ToUpper(uuid1), ""), http.StatusOK, &li)
	if li.UUID != uuid1 || li.Callback == "" || li.CallbackSecret != "" {
		t.Fatalf("GET /instances/<uuid> answered %+v", li)
	}
	refusal(t, send(t, h, "GET", "/instances/"+strings.Replace(uuid1, "0b", "ff", 1), ""), http.StatusNotFound, wire.CodeNotFound)

	for _, tc := range []struct {
		action, state string
		restarts      int
	}{
		{"stop", registry.StateStopped, 0},
		{"start", registry.StateRunning, 0},
		{"reboot", registry.StateRunning, 1},
	} {
		answer(t, send(t, h, "POST", "/instances/"+uuid1+"/actions", `{"action": "`+tc.action+`"}`), http.StatusOK, &li)
		if li.State != tc.state || li.Restarts != tc.restarts {
			t.Fatalf("%s answered %+v", tc.action, li)
		}
		if c := f.last(t); c.op != "Act" || c.uuid != uuid1 || c.action != tc.action {
			t.Fatalf("the Controller got %+v", c)
		}
	}

	var m messageAnswer
	answer(t, send(t, h, "DELETE", "/instances/"+uuid1, ""), http.StatusOK, &m)
	if m.Message != "forgot instance "+uuid1 {
		t.Fatalf("DELETE answered %+v", m)
	}
	refusal(t, send(t, h, "DELETE", "/instances/"+uuid1, ""), http.StatusNotFound, wire.CodeNotFound)
	refusal(t, send(t, h, "GET", "/instances/"+uuid1, ""), http.StatusNotFound, wire.CodeNotFound)
	refusal(t, send(t, h, "POST", "/instances/"+uuid1+"/actions", `{"action": "start"}`), http.StatusNotFound, wire.CodeNotFound)

	// Methods a route does not take.
	w = send(t, h, "PUT", "/instances/"+other.UUID, `{}`)
	refusal(t, w, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if got := w.Header().Get("Allow"); got != "DELETE, GET, HEAD" {
		t.Fatalf("Allow: %q", got)
	}
	refusal(t, send(t, h, "GET", "/instances/"+other.UUID+"/actions", ""), http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	refusal(t, send(t, h, "GET", "/instances/"+other.UUID+"/nope", ""), http.StatusNotFound, wire.CodeNotFound)
}

// Bad requests: each a 4xx naming what is wrong, and none reaches the
// Controller.
func TestInstanceRefusals(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	f.launched[uuid1] = registry.LaunchedInstance{UUID: uuid1, Service: "svc", State: registry.StateRunning}
	h := New(f, Options{MaxBody: 256})
	for _, tc := range []struct {
		method, path, body string
		status             int
		code, msg          string
	}{
		// The seed's refusal: an unknown action lists the valid ones.
		{"POST", "/instances/" + uuid1 + "/actions", `{"action": "explode"}`, 400, wire.CodeBadRequest, `invalid action: "explode": want start, stop, reboot`},
		{"POST", "/instances/" + uuid1 + "/actions", `{"action": "Stop"}`, 400, wire.CodeBadRequest, "want start, stop, reboot"},
		{"POST", "/instances/" + uuid1 + "/actions", `{}`, 400, wire.CodeBadRequest, "invalid action: missing: want start, stop, reboot"},
		{"POST", "/instances/" + uuid1 + "/actions", `{"action": "stop", "force": true}`, 400, wire.CodeBadRequest, `unknown field "force"`},
		{"POST", "/instances/" + uuid1 + "/actions", `{"action": 1}`, 400, wire.CodeBadRequest, "invalid action: want a string"},
		{"POST", "/instances/" + uuid1 + "/actions", `"stop"`, 400, wire.CodeBadRequest, "want a JSON object"},
		{"POST", "/instances/not-a-uuid/actions", `{"action": "stop"}`, 400, wire.CodeBadRequest, `invalid uuid: "not-a-uuid"`},
		{"GET", "/instances/not-a-uuid", "", 400, wire.CodeBadRequest, "invalid uuid"},
		{"DELETE", "/instances/" + uuid1 + "x", "", 400, wire.CodeBadRequest, "invalid uuid"},
		{"POST", "/instances", `{"service": "svc",}`, 400, wire.CodeBadRequest, "malformed JSON"},
		{"POST", "/instances", ` `, 400, wire.CodeBadRequest, "empty"},
		{"POST", "/instances", `{}`, 400, wire.CodeBadRequest, "invalid service: missing"},
		{"POST", "/instances", `{"service": "Bad Name"}`, 400, wire.CodeBadRequest, "invalid service name"},
		{"POST", "/instances", `{"service": "svc", "uuid": "1234"}`, 400, wire.CodeBadRequest, `invalid uuid: "1234" is not a UUID`},
		{"POST", "/instances", `{"service": "svc", "callback": "ftp://example.com/hook"}`, 400, wire.CodeBadRequest, `invalid callback: "ftp://example.com/hook": want an http:// or https:// URL`},
		{"POST", "/instances", `{"service": "svc", "callback": "example.com/hook"}`, 400, wire.CodeBadRequest, "invalid callback"},
		{"POST", "/instances", `{"service": "svc", "compute": "Site A"}`, 400, wire.CodeBadRequest, "compute"},
		{"POST", "/instances", `{"service": "svc", "image": "nginx"}`, 400, wire.CodeBadRequest, `unknown field "image": a launch takes uuid, service, compute and callback`},
		{"POST", "/instances", `{"service": "svc"} {}`, 400, wire.CodeBadRequest, "malformed JSON"},
		{"POST", "/instances", `{"service": "svc", "callback": "http://example.com/` + strings.Repeat("a", 300) + `"}`, 413, wire.CodeTooLarge, "at most 256 bytes"},
		{"GET", "/instances?service=Bad%20Name", "", 400, wire.CodeBadRequest, "invalid service name"},
		{"GET", "/instances?svc=x", "", 400, wire.CodeBadRequest, `unknown parameter "svc"`},
		{"GET", "/instances?service=a&service=b", "", 400, wire.CodeBadRequest, "given 2 times"},
	} {
		before := len(f.writes())
		w := send(t, h, tc.method, tc.path, tc.body)
		msg := refusal(t, w, tc.status, tc.code)
		if !strings.Contains(msg, tc.msg) {
			t.Errorf("%s %s %s: message %q, want it to contain %q", tc.method, tc.path, tc.body, msg, tc.msg)
		}
		if n := len(f.writes()); n != before {
			t.Errorf("%s %s %s: refused, but the Controller was asked to write", tc.method, tc.path, tc.body)
		}
		if tc.method == "GET" {
			for _, c := range f.calls {
				if c.op == "ListLaunched" || c.op == "GetLaunched" {
					t.Fatalf("%s %s: refused, but the Controller was asked %+v", tc.method, tc.path, c)
				}
			}
		}
	}
	// A body that is not JSON: 415.
	w := send(t, h, "POST", "/instances", `service=svc`, "Content-Type", "application/x-www-form-urlencoded")
	refusal(t, w, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType)
	if len(f.writes()) != 0 || f.launched[uuid1].State != registry.StateRunning || len(f.launched) != 1 {
		t.Fatalf("refusals changed the instances: %+v", f.launched)
	}
}

// With a token, every /instances route needs it (reads too unless
// PublicRead); a wrong token writes nothing.
func TestInstancesNeedTheToken(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	h := New(f, Options{Token: "s3cret", PublicRead: true})
	refusal(t, send(t, h, "POST", "/instances", `{"service": "svc"}`, "Authorization", "Bearer wrong"), http.StatusUnauthorized, CodeUnauthorized)
	refusal(t, send(t, h, "POST", "/instances/"+uuid1+"/actions", `{"action": "stop"}`), http.StatusUnauthorized, CodeUnauthorized)
	refusal(t, send(t, h, "DELETE", "/instances/"+uuid1, ""), http.StatusUnauthorized, CodeUnauthorized)
	if len(f.writes()) != 0 || len(f.launched) != 0 {
		t.Fatalf("refused writes reached the Controller: %+v", f.writes())
	}
	answer(t, send(t, h, "GET", "/instances", ""), http.StatusOK, nil)
	answer(t, send(t, h, "POST", "/instances", `{"service": "svc"}`, "Authorization", "Bearer s3cret"), http.StatusCreated, nil)
	if c := f.last(t); c.op != "Launch" || c.caller != "http token 127.0.0.1" {
		t.Fatalf("the Controller got %+v", c)
	}
}

// /instances is served only over a Lifecycle, and never on an
// allocator's connector.
func TestInstancesNotServed(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	for name, h := range map[string]http.Handler{
		"a Controller alone": New(struct{ registry.Controller }{f}, Options{}),
		"a node's connector": New(f, Options{NodeScope: "n1"}),
	} {
		for _, r := range [][3]string{
			{"GET", "/instances", ""}, {"POST", "/instances", `{"service": "svc"}`},
			{"GET", "/instances/" + uuid1, ""}, {"POST", "/instances/" + uuid1 + "/actions", `{"action": "stop"}`},
		} {
			msg := refusal(t, send(t, h, r[0], r[1], r[2]), http.StatusNotFound, wire.CodeNotFound)
			if !strings.Contains(msg, "/instances") {
				t.Errorf("%s: %s %s: %q does not say /instances is not served", name, r[0], r[1], msg)
			}
		}
	}
	if len(f.calls) != 0 || len(f.launched) != 0 {
		t.Fatalf("unserved routes reached the Controller: %+v", f.calls)
	}
}
