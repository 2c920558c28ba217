package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// helloworld is seed 001's example service.
var helloworld = registry.ServiceInfo{
	DockerHash:  "tutum/hello-world:latest",
	Ports:       []string{"8080", "8081"},
	Environment: map[string]string{"VAR_A": "value", "VAR_B": "value"},
}

func TestComputeRoutes(t *testing.T) {
	f := newFake()
	h := New(f, Options{})

	var put computeAnswer
	answer(t, send(t, h, "POST", "/compute", `{"name": "site-a", "connector": "physarum:labels?site=a"}`), http.StatusCreated, &put)
	if put.Message != "added compute site-a" || put.Compute != (registry.Compute{Name: "site-a", Connector: "physarum:labels?site=a"}) {
		t.Fatalf("POST /compute answered %+v", put)
	}
	answer(t, send(t, h, "PUT", "/compute/site-a", `{"connector": "physarum:labels?site=b"}`), http.StatusOK, &put)
	if put.Message != "updated compute site-a" || put.Compute.Connector != "physarum:labels?site=b" {
		t.Fatalf("PUT /compute/site-a answered %+v", put)
	}
	// PUT creates too, and a body may repeat the URL's name.
	answer(t, send(t, h, "PUT", "/compute/edge", `{"name": "edge", "connector": "http://127.0.0.1:7051"}`), http.StatusCreated, nil)

	var list map[string]registry.ComputeInfo
	answer(t, send(t, h, "GET", "/compute", ""), http.StatusOK, &list)
	if len(list) != 3 || list["physarum"].Kind != registry.KindNetwork || !list["physarum"].Builtin ||
		list["site-a"].Connector != "physarum:labels?site=b" || list["edge"].Kind != registry.KindConnector || list["edge"].Name != "edge" {
		t.Fatalf("GET /compute answered %+v", list)
	}
	var one registry.ComputeInfo
	answer(t, send(t, h, "GET", "/compute/edge", ""), http.StatusOK, &one)
	if one.Name != "edge" || one.Connector != "http://127.0.0.1:7051" || one.Kind != registry.KindConnector {
		t.Fatalf("GET /compute/edge answered %+v", one)
	}
	var msg messageAnswer
	answer(t, send(t, h, "DELETE", "/compute/edge", ""), http.StatusOK, &msg)
	if msg.Message != "deleted compute edge" {
		t.Fatalf("DELETE /compute/edge answered %+v", msg)
	}
	refusal(t, send(t, h, "GET", "/compute/edge", ""), http.StatusNotFound, wire.CodeNotFound)
	// HEAD is GET without a body.
	if w := send(t, h, "HEAD", "/compute", ""); w.Code != http.StatusOK {
		t.Fatalf("HEAD /compute: %d", w.Code)
	}
}

func TestServiceRoutes(t *testing.T) {
	f := newFake()
	h := New(f, Options{})

	body := `{"name": "svc", "image": "nginx:1", "command": "nginx -g daemon_off", "environment": {"A": "1"}, "ports": ["80"], "CpuReq": 250}`
	w := send(t, h, "POST", "/service", body)
	var added map[string]any
	answer(t, w, http.StatusCreated, &added)
	if added["message"] != "added service svc" {
		t.Fatalf("POST /service answered %s", w.Body)
	}
	svc := added["service"].(map[string]any)
	if svc["name"] != "svc" || svc["image"] != "nginx:1" || svc["command"] != "nginx -g daemon_off" || svc["CpuReq"] != 250.0 {
		t.Fatalf("POST /service answered the service %v", svc)
	}
	want := registry.ServiceInfo{DockerHash: "nginx:1", Command: "nginx -g daemon_off", Environment: map[string]string{"A": "1"}, Ports: []string{"80"}, CpuReq: 250}
	if c := f.last(t); c.op != "AddService" || c.service != "svc" || !reflect.DeepEqual(c.info, want) {
		t.Fatalf("the Controller got %+v, want AddService svc %+v", c, want)
	}

	// POST again replaces: 200.
	answer(t, send(t, h, "POST", "/service", body), http.StatusOK, nil)
	// PUT creates (201) or replaces (200); the name is the URL's.
	answer(t, send(t, h, "PUT", "/service/other", `{"image": "busybox:1"}`), http.StatusCreated, nil)
	answer(t, send(t, h, "PUT", "/service/other", `{"image": "busybox:2", "name": "other"}`), http.StatusOK, nil)
	if f.services["other"].DockerHash != "busybox:2" {
		t.Fatalf("PUT /service/other stored %+v", f.services["other"])
	}

	var list map[string]map[string]any
	answer(t, send(t, h, "GET", "/service", ""), http.StatusOK, &list)
	if len(list) != 2 || list["svc"]["image"] != "nginx:1" || list["other"]["name"] != "other" || list["other"]["command"] != nil {
		t.Fatalf("GET /service answered %v", list)
	}
	var one map[string]any
	answer(t, send(t, h, "GET", "/service/svc", ""), http.StatusOK, &one)
	if one["name"] != "svc" || one["environment"].(map[string]any)["A"] != "1" || one["ports"].([]any)[0] != "80" {
		t.Fatalf("GET /service/svc answered %v", one)
	}

	var msg messageAnswer
	answer(t, send(t, h, "DELETE", "/service/other", ""), http.StatusOK, &msg)
	if msg.Message != "deleted service other" {
		t.Fatalf("DELETE answered %+v", msg)
	}
	refusal(t, send(t, h, "DELETE", "/service/other", ""), http.StatusNotFound, wire.CodeNotFound)
	refusal(t, send(t, h, "GET", "/service/other", ""), http.StatusNotFound, wire.CodeNotFound)
}

func TestScaleAndStatus(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	f.computes["site-a"] = registry.Compute{Name: "site-a", Connector: "physarum:labels?site=a"}
	h := New(f, Options{})

	var sc scaleAnswer
	answer(t, send(t, h, "POST", "/service/svc/scale", `{"number": 3, "compute": "site-a"}`), http.StatusOK, &sc)
	if sc.Desired.Number != 3 || sc.Desired.Compute != "site-a" || sc.Message != "scaled service svc to 3 on compute site-a" {
		t.Fatalf("scale answered %+v", sc)
	}
	if c := f.last(t); c.op != "Scale" || c.service != "svc" || c.compute != "site-a" || c.number != 3 {
		t.Fatalf("the Controller got %+v", c)
	}
	// Without a compute, the Controller gets "" (physarum); 0 is a count.
	answer(t, send(t, h, "POST", "/service/svc/scale", `{"number": 0}`), http.StatusOK, &sc)
	if c := f.last(t); c.compute != "" || c.number != 0 || sc.Desired.Compute != registry.ComputePhysarum {
		t.Fatalf("the Controller got %+v, answered %+v", c, sc)
	}

	var st registry.ServiceStatus
	answer(t, send(t, h, "GET", "/service/svc/status", ""), http.StatusOK, &st)
	if st.Service != "svc" || st.RunningResources != 3 || st.Desired != 3 || st.Computes["site-a"].Running != 3 {
		t.Fatalf("status answered %+v", st)
	}
	if !strings.Contains(send(t, h, "GET", "/service/svc/status", "").Body.String(), `"running_resources":3`) {
		t.Fatal("running_resources is not at the top level")
	}

	f.services["idle"] = helloworld
	var all map[string]registry.ServiceStatus
	w := send(t, h, "GET", "/status", "")
	answer(t, w, http.StatusOK, &all)
	if len(all) != 2 || all["svc"].RunningResources != 3 || all["idle"].Service != "idle" || all["idle"].Instances == nil {
		t.Fatalf("GET /status answered %s", w.Body)
	}
	// Empty collections are [] and {}, never null.
	if strings.Contains(w.Body.String(), "null") {
		t.Fatalf("GET /status answered a null: %s", w.Body)
	}
	refusal(t, send(t, h, "GET", "/service/nope/status", ""), http.StatusNotFound, wire.CodeNotFound)
}

// TestSeedExamples sends the seeds' example requests as their httpie
// command lines do: key=value as JSON strings (so number=3 is "3"),
// key:=json as JSON.
func TestSeedExamples(t *testing.T) {
	t.Run("000 Genisys", func(t *testing.T) {
		f := newFake()
		f.services["myservice"] = helloworld
		h := New(f, Options{})

		// http POST :7001/compute name="localdc" connector="http://localhost:7051"
		answer(t, send(t, h, "POST", "/compute", `{"name": "localdc", "connector": "http://localhost:7051"}`), http.StatusCreated, nil)
		if c := f.last(t); c.op != "PutCompute" || c.compute != "localdc" || c.conn != "http://localhost:7051" {
			t.Fatalf("the Controller got %+v", c)
		}
		// http PUT :7001/compute/local connector="http://localhost:7052"
		answer(t, send(t, h, "PUT", "/compute/local", `{"connector": "http://localhost:7052"}`), http.StatusCreated, nil)
		if c := f.last(t); c.op != "PutCompute" || c.compute != "local" || c.conn != "http://localhost:7052" {
			t.Fatalf("the Controller got %+v", c)
		}
		// http GET :7001/compute, as the seed shows it: keyed by name.
		var list map[string]registry.ComputeInfo
		answer(t, send(t, h, "GET", "/compute", ""), http.StatusOK, &list)
		if list["localdc"].Name != "localdc" || list["localdc"].Connector != "http://localhost:7051" {
			t.Fatalf("GET /compute answered %+v", list)
		}
		// http GET :7001/compute/localdc
		var one registry.ComputeInfo
		answer(t, send(t, h, "GET", "/compute/localdc", ""), http.StatusOK, &one)
		if one.Name != "localdc" || one.Connector != "http://localhost:7051" {
			t.Fatalf("GET /compute/localdc answered %+v", one)
		}
		// http POST :7001/service/myService/scale number=3 compute="local"
		// (the registry's names are lower case: myService is myservice).
		var sc scaleAnswer
		answer(t, send(t, h, "POST", "/service/myService/scale", `{"number": "3", "compute": "local"}`), http.StatusOK, &sc)
		if c := f.last(t); c.op != "Scale" || c.service != "myservice" || c.compute != "local" || c.number != 3 {
			t.Fatalf("the Controller got %+v", c)
		}
		if sc.Desired.Number != 3 {
			t.Fatalf("scale answered %+v", sc)
		}
	})

	// Seed 001 against registry-service's API (scope "") and against an
	// allocator's connector for its node n1.
	for _, scope := range []string{"", "n1"} {
		name := "001 connector on registry-service"
		if scope != "" {
			name = "001 connector on an allocator"
		}
		t.Run(name, func(t *testing.T) {
			f := newFake()
			h := New(f, Options{NodeScope: scope})
			if scope != "" {
				f.computes[scope] = registry.Compute{Name: scope, Connector: registry.NodeConnector(scope)}
			}

			// http POST :7051/service name="helloworld" image="tutum/hello-world:latest" ports:='["8080", "8081"]' environment:='{"VAR_A":"value", "VAR_B": "value"}'
			answer(t, send(t, h, "POST", "/service", `{"name": "helloworld", "image": "tutum/hello-world:latest", "ports": ["8080", "8081"], "environment": {"VAR_A": "value", "VAR_B": "value"}}`), http.StatusCreated, nil)
			if c := f.last(t); c.op != "AddService" || c.service != "helloworld" || !reflect.DeepEqual(c.info, helloworld) {
				t.Fatalf("the Controller got %+v", c)
			}
			// http GET :7051/service/helloworld
			var got map[string]any
			answer(t, send(t, h, "GET", "/service/helloworld", ""), http.StatusOK, &got)
			if got["name"] != "helloworld" || got["image"] != "tutum/hello-world:latest" || got["command"] != nil {
				t.Fatalf("GET /service/helloworld answered %v", got)
			}
			// http PUT :7051/service/helloworld image="panamax/hello-world-php:latest" command="/run.sh" ports:='["8080", "8082"]' environment:='{"VAR_A":"value", "VAR_B": "value"}'
			answer(t, send(t, h, "PUT", "/service/helloworld", `{"image": "panamax/hello-world-php:latest", "command": "/run.sh", "ports": ["8080", "8082"], "environment": {"VAR_A": "value", "VAR_B": "value"}}`), http.StatusOK, nil)
			want := registry.ServiceInfo{DockerHash: "panamax/hello-world-php:latest", Command: "/run.sh", Ports: []string{"8080", "8082"}, Environment: map[string]string{"VAR_A": "value", "VAR_B": "value"}}
			if c := f.last(t); c.op != "AddService" || c.service != "helloworld" || !reflect.DeepEqual(c.info, want) {
				t.Fatalf("the Controller got %+v, want %+v", c, want)
			}
			// http GET :7051/service
			var list map[string]map[string]any
			answer(t, send(t, h, "GET", "/service", ""), http.StatusOK, &list)
			if list["helloworld"]["command"] != "/run.sh" {
				t.Fatalf("GET /service answered %v", list)
			}
			// http POST :7051/service/helloworld/scale number=3
			answer(t, send(t, h, "POST", "/service/helloworld/scale", `{"number": "3"}`), http.StatusOK, nil)
			if c := f.last(t); c.op != "Scale" || c.service != "helloworld" || c.compute != scope || c.number != 3 {
				t.Fatalf("the Controller got %+v, want Scale helloworld %q 3", c, scope)
			}
			// http GET :7051/service/helloworld/status
			w := send(t, h, "GET", "/service/helloworld/status", "")
			text := w.Body.String()
			var st registry.ServiceStatus
			answer(t, w, http.StatusOK, &st)
			if st.RunningResources != 3 || !strings.Contains(text, `"running_resources":3`) {
				t.Fatalf("status answered %s", text)
			}
		})
	}
}

// TestBadInput sends requests that must be refused before the Controller
// is asked to write anything.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code                     string
		mention                  string // the message names this
	}{
		{"unknown compute", "POST", "/service/svc/scale", `{"number": 3, "compute": "nope"}`, nil, 404, wire.CodeNotFound, `"nope"`},
		{"unknown service", "POST", "/service/ghost/scale", `{"number": 3}`, nil, 404, wire.CodeNotFound, "ghost"},
		{"negative number", "POST", "/service/svc/scale", `{"number": -1}`, nil, 400, wire.CodeBadRequest, "number"},
		{"negative string number", "POST", "/service/svc/scale", `{"number": "-2"}`, nil, 400, wire.CodeBadRequest, "negative"},
		{"non-numeric number", "POST", "/service/svc/scale", `{"number": "three"}`, nil, 400, wire.CodeBadRequest, "number"},
		{"fractional number", "POST", "/service/svc/scale", `{"number": 2.5}`, nil, 400, wire.CodeBadRequest, "not a whole number"},
		{"fractional string number", "POST", "/service/svc/scale", `{"number": "2.5"}`, nil, 400, wire.CodeBadRequest, "not a whole number"},
		{"exponent number", "POST", "/service/svc/scale", `{"number": 3e0}`, nil, 400, wire.CodeBadRequest, "number"},
		{"boolean number", "POST", "/service/svc/scale", `{"number": true}`, nil, 400, wire.CodeBadRequest, "number"},
		{"huge number", "POST", "/service/svc/scale", `{"number": 99999999999999999999999}`, nil, 400, wire.CodeBadRequest, "out of range"},
		{"missing number", "POST", "/service/svc/scale", `{"compute": "physarum"}`, nil, 400, wire.CodeBadRequest, "number"},
		{"null number", "POST", "/service/svc/scale", `{"number": null}`, nil, 400, wire.CodeBadRequest, "number"},
		{"unknown scale field", "POST", "/service/svc/scale", `{"number": 3, "replicas": 3}`, nil, 400, wire.CodeBadRequest, `"replicas"`},
		{"compute not a string", "POST", "/service/svc/scale", `{"number": 3, "compute": 7}`, nil, 400, wire.CodeBadRequest, "compute"},
		{"bad compute name", "POST", "/service/svc/scale", `{"number": 3, "compute": "Site A"}`, nil, 400, wire.CodeBadRequest, "compute name"},
		{"bad service name", "POST", "/service/bad_name!/scale", `{"number": 3}`, nil, 400, wire.CodeBadRequest, "service name"},
		{"malformed JSON", "POST", "/service/svc/scale", `{"number": 3`, nil, 400, wire.CodeBadRequest, "malformed JSON"},
		{"trailing garbage", "POST", "/service/svc/scale", `{"number": 3} x`, nil, 400, wire.CodeBadRequest, "malformed JSON"},
		{"trailing brace", "POST", "/service", `{"name": "a", "image": "b:1"}}`, nil, 400, wire.CodeBadRequest, "malformed JSON"},
		{"second object", "POST", "/compute", `{"name": "a", "connector": "physarum"} {}`, nil, 400, wire.CodeBadRequest, "malformed JSON"},
		{"empty body", "POST", "/service/svc/scale", ` `, nil, 400, wire.CodeBadRequest, "empty"},
		{"array body", "POST", "/service", `[]`, nil, 400, wire.CodeBadRequest, "an array"},
		{"form body", "POST", "/service/svc/scale", `number=3`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, CodeUnsupportedMediaType, "application/json"},
		{"no content type", "POST", "/service/svc/scale", `{"number": 3}`, []string{"Content-Type", ""}, 415, CodeUnsupportedMediaType, "none"},
		{"text body", "PUT", "/service/svc", `{"image": "b:1"}`, []string{"Content-Type", "text/plain"}, 415, CodeUnsupportedMediaType, "text/plain"},
		{"compute without connector", "POST", "/compute", `{"name": "a"}`, nil, 400, wire.CodeBadRequest, "connector"},
		{"compute without name", "POST", "/compute", `{"connector": "physarum"}`, nil, 400, wire.CodeBadRequest, "name"},
		{"compute bad connector", "POST", "/compute", `{"name": "a", "connector": "ftp://x"}`, nil, 400, wire.CodeBadRequest, "connector"},
		{"compute unknown field", "POST", "/compute", `{"name": "a", "connector": "physarum", "region": "eu"}`, nil, 400, wire.CodeBadRequest, `"region"`},
		{"compute names disagree", "PUT", "/compute/a", `{"name": "b", "connector": "physarum"}`, nil, 400, wire.CodeBadRequest, `"b"`},
		{"compute built in", "PUT", "/compute/physarum", `{"connector": "physarum"}`, nil, 409, wire.CodeConflict, "built in"},
		{"service without image", "POST", "/service", `{"name": "a"}`, nil, 400, wire.CodeBadRequest, "image"},
		{"service without name", "POST", "/service", `{"image": "a:1"}`, nil, 400, wire.CodeBadRequest, "name"},
		{"service names disagree", "PUT", "/service/a", `{"name": "b", "image": "a:1"}`, nil, 400, wire.CodeBadRequest, `"b"`},
		{"service bad port", "POST", "/service", `{"name": "a", "image": "a:1", "ports": ["http"]}`, nil, 400, wire.CodeBadRequest, "Ports[0]"},
		{"service ports not a list", "POST", "/service", `{"name": "a", "image": "a:1", "ports": "8080"}`, nil, 400, wire.CodeBadRequest, "body"},
		{"unknown route", "GET", "/services", "", nil, 404, wire.CodeNotFound, "/services"},
		{"empty name", "POST", "/service//scale", `{"number": 3}`, nil, 404, wire.CodeNotFound, "no route"},
		{"escaped slash in name", "DELETE", "/service/a%2Fb", "", nil, 400, wire.CodeBadRequest, "service name"},
		{"wrong method", "DELETE", "/service/svc/scale", "", nil, 405, CodeMethodNotAllowed, "POST"},
		{"wrong method on a list", "DELETE", "/service", "", nil, 405, CodeMethodNotAllowed, "GET, HEAD, POST"},
		{"rebound host", "POST", "/service/svc/scale", `{"number": 3}`, []string{"Host", "evil.example:7001"}, 403, wire.CodeForbidden, "evil.example"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFake()
			f.services["svc"] = helloworld
			h := New(f, Options{})
			w := sendWithHost(t, h, c.method, c.path, c.body, c.hdr...)
			msg := refusal(t, w, c.status, c.code)
			if !strings.Contains(msg, c.mention) {
				t.Errorf("message %q does not mention %q", msg, c.mention)
			}
			if ws := f.writes(); len(ws) > 0 && c.code != wire.CodeNotFound && c.code != wire.CodeConflict {
				t.Fatalf("the Controller was asked to write: %+v", ws)
			}
			if c.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
				t.Fatal("405 without an Allow header")
			}
			// Nothing changed, even where the Controller refused.
			if len(f.desired) != 0 || len(f.computes) != 0 || len(f.services) != 1 {
				t.Fatalf("state changed: desired %v computes %v services %v", f.desired, f.computes, f.services)
			}
		})
	}
}

// sendWithHost is send with a Host header taken from hdr when it names
// one.
func sendWithHost(t *testing.T, h http.Handler, method, path, body string, hdr ...string) *httptestRecorder {
	t.Helper()
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			rest := append(append([]string{}, hdr[:i]...), hdr[i+2:]...)
			return sendTo(t, h, hdr[i+1], method, path, body, rest...)
		}
	}
	return send(t, h, method, path, body, hdr...)
}

func TestBodyLimit(t *testing.T) {
	f := newFake()
	h := New(f, Options{MaxBody: 64})
	big := `{"name": "a", "image": "b:1", "command": "` + strings.Repeat("x", 100) + `"}`
	// With a Content-Length above the limit: refused before reading.
	msg := refusal(t, send(t, h, "POST", "/service", big), http.StatusRequestEntityTooLarge, wire.CodeTooLarge)
	if !strings.Contains(msg, "64") {
		t.Fatalf("message %q does not say the limit", msg)
	}
	// Without one (chunked): refused when the read passes the limit.
	r := newRequest(t, "127.0.0.1:7001", "POST", "/service", big)
	r.ContentLength = -1
	w := serve(h, r)
	refusal(t, w, http.StatusRequestEntityTooLarge, wire.CodeTooLarge)
	if ws := f.writes(); len(ws) > 0 {
		t.Fatalf("the Controller was asked to write: %+v", ws)
	}
	// At the limit, a body is read.
	answer(t, send(t, h, "POST", "/service/a/scale", `{"number": 3}`+strings.Repeat(" ", 64-13)), http.StatusNotFound, nil)

	// The default is 1 MiB.
	h = New(f, Options{})
	huge := `{"name": "a", "image": "b:1", "command": "` + strings.Repeat("x", DefaultMaxBody) + `"}`
	refusal(t, send(t, h, "POST", "/service", huge), http.StatusRequestEntityTooLarge, wire.CodeTooLarge)
}

func TestToken(t *testing.T) {
	const token = "s3cret-token"
	cases := []struct {
		name       string
		publicRead bool
		method     string
		path, body string
		auth       string
		status     int
	}{
		{"write without token", false, "POST", "/service/svc/scale", `{"number": 3}`, "", 401},
		{"write with wrong token", false, "POST", "/service/svc/scale", `{"number": 3}`, "Bearer nope", 401},
		{"write with a longer wrong token", false, "POST", "/service/svc/scale", `{"number": 3}`, "Bearer " + token + "x", 401},
		{"write with basic auth", false, "POST", "/service/svc/scale", `{"number": 3}`, "Basic " + token, 401},
		{"write with token", false, "POST", "/service/svc/scale", `{"number": 3}`, "Bearer " + token, 200},
		{"scheme in any case", false, "POST", "/service/svc/scale", `{"number": 3}`, "bearer " + token, 200},
		{"delete without token", false, "DELETE", "/service/svc", "", "", 401},
		{"read without token", false, "GET", "/service", "", "", 401},
		{"read with token", false, "GET", "/service", "", "Bearer " + token, 200},
		{"public read without token", true, "GET", "/service/svc/status", "", "", 200},
		{"public read with a wrong token", true, "GET", "/service/svc/status", "", "Bearer nope", 200},
		{"public read, write without token", true, "PUT", "/compute/a", `{"connector": "physarum"}`, "", 401},
		{"public read, write with wrong token", true, "DELETE", "/compute/a", "", "Bearer x", 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFake()
			f.services["svc"] = helloworld
			h := New(f, Options{Token: token, PublicRead: c.publicRead})
			// With a token, requests may be addressed by any name.
			w := sendTo(t, h, "registry.example:7001", c.method, c.path, c.body, "Authorization", c.auth)
			if c.status != http.StatusUnauthorized {
				answer(t, w, c.status, nil)
				return
			}
			refusal(t, w, http.StatusUnauthorized, CodeUnauthorized)
			challenge := w.Header().Get("WWW-Authenticate")
			if !strings.HasPrefix(challenge, "Bearer") {
				t.Fatalf("WWW-Authenticate %q", challenge)
			}
			if c.auth != "" && !strings.Contains(challenge, "invalid_token") {
				t.Fatalf("WWW-Authenticate %q after a wrong token", challenge)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.calls) > 0 {
				t.Fatalf("the Controller was called: %+v", f.calls)
			}
		})
	}
}

func TestCallerAndDeadline(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	h := New(f, Options{Token: "t", PublicRead: true})
	answer(t, send(t, h, "POST", "/service/svc/scale", `{"number": 1}`, "Authorization", "Bearer t"), http.StatusOK, nil)
	c := f.last(t)
	if c.caller != "http token 127.0.0.1" {
		t.Fatalf("caller %q", c.caller)
	}
	if c.deadline <= 0 || c.deadline > RequestTimeout {
		t.Fatalf("the Controller's call had %v left, want at most %v", c.deadline, RequestTimeout)
	}
	answer(t, send(t, h, "GET", "/service/svc/status", ""), http.StatusOK, nil)
	if c := f.last(t); c.caller != "http 127.0.0.1" {
		t.Fatalf("caller of a public read %q", c.caller)
	}
}

func TestHost(t *testing.T) {
	f := newFake()
	h := New(f, Options{})
	for _, host := range []string{"127.0.0.1:7001", "[::1]:7001", "localhost:7001", "LOCALHOST", "api.localhost:7001", "10.1.2.3", ""} {
		answer(t, sendTo(t, h, host, "GET", "/compute", ""), http.StatusOK, nil)
	}
	for _, host := range []string{"evil.example", "127.0.0.1.nip.io:7001", "localhost.evil.example"} {
		refusal(t, sendTo(t, h, host, "GET", "/compute", ""), http.StatusForbidden, wire.CodeForbidden)
	}
	// On a connection that came in beyond loopback (an allocator's
	// connector on :7051, reached by a Genisys by name), any Host goes;
	// on loopback, names are checked.
	at := func(local string, host string) *httptestRecorder {
		r := newRequest(t, host, "GET", "/compute", "")
		ip, _ := netip.ParseAddr(local)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 7051))))
		return serve(h, r)
	}
	answer(t, at("10.0.0.5", "node1.example:7051"), http.StatusOK, nil)
	refusal(t, at("127.0.0.1", "node1.example:7051"), http.StatusForbidden, wire.CodeForbidden)
	refusal(t, at("::1", "node1.example:7051"), http.StatusForbidden, wire.CodeForbidden)
}

func TestNodeScope(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	f.computes["n1"] = registry.Compute{Name: "n1", Connector: registry.NodeConnector("n1")}
	h := New(f, Options{NodeScope: "n1"})

	for _, r := range []struct{ method, path, body string }{
		{"GET", "/compute", ""}, {"POST", "/compute", `{"name": "a", "connector": "physarum"}`},
		{"GET", "/compute/n1", ""}, {"PUT", "/compute/n1", `{"connector": "physarum"}`}, {"DELETE", "/compute/n1", ""},
	} {
		msg := refusal(t, send(t, h, r.method, r.path, r.body), http.StatusNotFound, wire.CodeNotFound)
		if !strings.Contains(msg, "registry-service") {
			t.Errorf("%s %s: message %q does not say where computes are", r.method, r.path, msg)
		}
	}
	// The body may name the node's own compute, and no other.
	answer(t, send(t, h, "POST", "/service/svc/scale", `{"number": 2, "compute": "n1"}`), http.StatusOK, nil)
	msg := refusal(t, send(t, h, "POST", "/service/svc/scale", `{"number": 2, "compute": "physarum"}`), http.StatusBadRequest, wire.CodeBadRequest)
	if !strings.Contains(msg, `"n1"`) || !strings.Contains(msg, `"physarum"`) {
		t.Fatalf("message %q", msg)
	}
	if ws := f.writes(); len(ws) != 1 || ws[0].compute != "n1" {
		t.Fatalf("writes %+v", ws)
	}

	f.statuses["svc"] = registry.ServiceStatus{
		Service: "svc", RunningResources: 5, Desired: 6, Starting: 1, Failed: 0, OnDemand: 2,
		Computes: map[string]registry.ComputeStatus{
			"n1":     {Desired: 2, Running: 1, Starting: 1},
			"site-a": {Desired: 4, Running: 4},
		},
		Instances: []registry.InstanceStatus{
			{ID: "a", NodeName: "n1", Compute: "n1", State: registry.StateRunning},
			{ID: "b", NodeName: "n1", Compute: "n1", State: registry.StateStarting},
			{ID: "c", NodeName: "n1", Compute: "site-a", State: registry.StateRunning},
			{ID: "d", NodeName: "n2", Compute: "site-a", State: registry.StateRunning},
			{ID: "e", NodeName: "n1", OnDemand: true, State: registry.StateRunning},
			{ID: "f", NodeName: "n2", OnDemand: true, State: registry.StateRunning},
		},
	}
	var st registry.ServiceStatus
	answer(t, send(t, h, "GET", "/service/svc/status", ""), http.StatusOK, &st)
	var ids []string
	for _, in := range st.Instances {
		ids = append(ids, in.ID)
	}
	if st.RunningResources != 1 || st.Desired != 2 || st.Starting != 1 || st.OnDemand != 1 || len(st.Computes) != 1 ||
		fmt.Sprint(ids) != "[a b e]" {
		t.Fatalf("status narrowed to n1: %+v", st)
	}
	var all map[string]registry.ServiceStatus
	answer(t, send(t, h, "GET", "/status", ""), http.StatusOK, &all)
	if all["svc"].RunningResources != 1 {
		t.Fatalf("GET /status narrowed to n1: %+v", all)
	}
	// Without canned figures, the fake reports what was scaled: 2 on n1.
	delete(f.statuses, "svc")
	answer(t, send(t, h, "GET", "/service/svc/status", ""), http.StatusOK, &st)
	if st.RunningResources != 2 || st.Desired != 2 {
		t.Fatalf("status %+v", st)
	}
	f.desired = map[[2]string]registry.Desired{{"svc", "physarum"}: {Number: 9}}
	st = registry.ServiceStatus{}
	answer(t, send(t, h, "GET", "/service/svc/status", ""), http.StatusOK, &st)
	if st.RunningResources != 0 || st.Desired != 0 || len(st.Computes) != 0 || len(st.Instances) != 0 {
		t.Fatalf("status of a service with nothing on n1: %+v", st)
	}
}

func TestControllerErrors(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
		msg    string // the message, exactly
	}{
		{wire.Errorf(wire.CodeNotFound, "no compute named %q", "x"), 404, wire.CodeNotFound, `no compute named "x"`},
		{fmt.Errorf("scale svc: %w", wire.Errorf(wire.CodeConflict, "busy")), 409, wire.CodeConflict, "busy"},
		{wire.Errorf(wire.CodeForbidden, "not on -writers"), 403, wire.CodeForbidden, "not on -writers"},
		{wire.Errorf(wire.CodeBadRequest, "number 5000 is above -max-scale 1000"), 400, wire.CodeBadRequest, "number 5000 is above -max-scale 1000"},
		{wire.Errorf(wire.CodeUnavailable, "etcd has no leader"), 503, wire.CodeUnavailable, "etcd has no leader"},
		{wire.Errorf(wire.CodeNoCapacity, "full"), 503, wire.CodeNoCapacity, "full"},
		{wire.Errorf(wire.CodeTimeout, "slow"), 504, wire.CodeTimeout, "slow"},
		{wire.Errorf(wire.CodeTooLarge, "big"), 413, wire.CodeTooLarge, "big"},
		{wire.Errorf(wire.CodeInternal, "bug"), 500, wire.CodeInternal, "bug"},
		{wire.Errorf(wire.CodeUnsupported, "no docker"), 501, wire.CodeUnsupported, "no docker"},
		{wire.Errorf(wire.CodeRuntimeError, "crashed"), 502, wire.CodeRuntimeError, "crashed"},
		{wire.Errorf("gone_fishing", "what"), 502, "gone_fishing", "what"},
		{&wire.Error{}, 500, wire.CodeInternal, wire.CodeInternal},
		{fmt.Errorf("%w service name: empty", registry.ErrInvalid), 400, wire.CodeBadRequest, "invalid service name: empty"},
		{registry.ErrNoRegistry, 503, wire.CodeUnavailable, registry.ErrNoRegistry.Error()},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), 504, wire.CodeTimeout, "the operation ran past its deadline (30s)"},
		{context.Canceled, 503, wire.CodeUnavailable, "the request was cancelled"},
		{errors.New("etcd: secret internal detail"), 500, wire.CodeInternal, "internal error (the server's log has the cause)"},
	}
	for _, c := range cases {
		t.Run(c.code+" "+c.msg, func(t *testing.T) {
			f := newFake()
			f.services["svc"] = helloworld
			f.err = c.err
			h := New(f, Options{})
			for _, r := range []struct{ method, path, body string }{
				{"GET", "/status", ""},
				{"POST", "/service/svc/scale", `{"number": 1}`},
			} {
				if msg := refusal(t, send(t, h, r.method, r.path, r.body), c.status, c.code); msg != c.msg {
					t.Fatalf("%s %s: message %q, want %q", r.method, r.path, msg, c.msg)
				}
			}
		})
	}
}

func TestAnswersAreJSON(t *testing.T) {
	f := newFake()
	f.services["svc"] = helloworld
	h := New(f, Options{})
	w := send(t, h, "GET", "/service/svc", "")
	answer(t, w, http.StatusOK, nil)
	if w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatal("no X-Content-Type-Options: nosniff")
	}
	// Messages are not HTML-escaped.
	msg := refusal(t, send(t, h, "GET", "/nope", ""), http.StatusNotFound, wire.CodeNotFound)
	if !strings.Contains(msg, "/service/<name>") {
		t.Fatalf("message %q", msg)
	}
	// A trailing slash is the same route.
	answer(t, send(t, h, "GET", "/service/", ""), http.StatusOK, nil)
	answer(t, send(t, h, "GET", "/service/svc/status/", ""), http.StatusOK, nil)
}
