package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// The fuzz targets feed arbitrary bodies (and URL names) to the handler,
// over the fake Controller: whatever comes in, the answer is a success or
// a 4xx JSON error whose code maps to its status, and a body refused as
// bad never reaches the Controller. Their seed corpora, under
// testdata/fuzz/, hold the seeds' examples and bad inputs.

// fuzzServe serves one body through h (path is escaped) and checks the
// answer's shape. It returns the status and the answer.
func fuzzServe(t *testing.T, f *fakeControl, h http.Handler, method, path string, body []byte) (int, []byte) {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:7001"+path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.RemoteAddr = "127.0.0.1:40000"
	before := len(f.writes())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	out := w.Body.Bytes()
	if !json.Valid(out) || !bytes.HasSuffix(out, []byte("\n")) {
		t.Fatalf("%s %s %q: answer is not JSON and a newline: %q", method, path, body, out)
	}
	switch {
	case w.Code == http.StatusOK || w.Code == http.StatusCreated:
	case w.Code >= 400 && w.Code < 500:
		var e wire.Error
		if err := json.Unmarshal(out, &e); err != nil || e.Code == "" || e.Message == "" || StatusOf(e.Code) != w.Code {
			t.Fatalf("%s %s %q: %d with error %s", method, path, body, w.Code, out)
		}
		// The fake refuses with not_found and conflict only: a body the
		// door refuses never reaches it.
		if (e.Code == wire.CodeBadRequest || e.Code == wire.CodeTooLarge) && len(f.writes()) != before {
			t.Fatalf("%s %s %q: refused with %s, but the Controller was asked to write", method, path, body, out)
		}
	default:
		t.Fatalf("%s %s %q: status %d: %s", method, path, body, w.Code, out)
	}
	return w.Code, out
}

func FuzzScaleBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, scope := range []string{"", "n1"} {
			fc := newFake()
			fc.services["svc"] = helloworld
			fc.computes["local"] = registry.Compute{Name: "local", Connector: "http://localhost:7052"}
			fc.computes["n1"] = registry.Compute{Name: "n1", Connector: registry.NodeConnector("n1")}
			h := New(fc, Options{NodeScope: scope, MaxBody: 4096})
			status, _ := fuzzServe(t, fc, h, "POST", "/service/svc/scale", body)
			if status != http.StatusOK {
				continue
			}
			c := fc.last(t)
			if c.op != "Scale" || c.service != "svc" || c.number < 0 || (scope != "" && c.compute != scope) {
				t.Fatalf("%q accepted as %+v", body, c)
			}
			if c.compute != "" {
				if err := registry.ValidateComputeName(c.compute); err != nil {
					t.Fatalf("%q accepted with compute %q: %v", body, c.compute, err)
				}
			}
		}
	})
}

// FuzzComputeBody posts a body to /compute (name "") or puts it to
// /compute/<name>.
func FuzzComputeBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		fc := newFake()
		h := New(fc, Options{MaxBody: 4096})
		method, path := "POST", "/compute"
		if name != "" {
			method, path = "PUT", "/compute/"+url.PathEscape(name)
		}
		status, _ := fuzzServe(t, fc, h, method, path, body)
		if status >= 400 {
			return
		}
		c := fc.last(t)
		if c.op != "PutCompute" {
			t.Fatalf("%q accepted as %+v", body, c)
		}
		if name != "" && c.compute != strings.ToLower(name) {
			t.Fatalf("PUT /compute/%s %q put compute %q", name, body, c.compute)
		}
		if err := (registry.Compute{Name: c.compute, Connector: c.conn}).Validate(); err != nil {
			t.Fatalf("%q accepted an invalid compute %+v: %v", body, c, err)
		}
	})
}

// FuzzServiceBody posts a body to /service (name "") or puts it to
// /service/<name>; what is accepted is valid, and reads back the same.
func FuzzServiceBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		fc := newFake()
		h := New(fc, Options{MaxBody: 4096})
		method, path := "POST", "/service"
		if name != "" {
			method, path = "PUT", "/service/"+url.PathEscape(name)
		}
		status, _ := fuzzServe(t, fc, h, method, path, body)
		if status >= 400 {
			return
		}
		c := fc.last(t)
		if c.op != "AddService" {
			t.Fatalf("%q accepted as %+v", body, c)
		}
		if name != "" && c.service != strings.ToLower(name) {
			t.Fatalf("PUT /service/%s %q added service %q", name, body, c.service)
		}
		if err := registry.ValidateName(c.service); err != nil {
			t.Fatalf("%q accepted an invalid name: %v", body, err)
		}
		if err := c.info.Validate(); err != nil {
			t.Fatalf("%q accepted an invalid service %+v: %v", body, c.info, err)
		}
		// What GET answers, put back, is the same service.
		_, got := fuzzServe(t, fc, h, "GET", "/service/"+c.service, nil)
		status, _ = fuzzServe(t, fc, h, "PUT", "/service/"+c.service, got)
		if status != http.StatusOK {
			t.Fatalf("%q: GET answered %s, which PUT refuses", body, got)
		}
		_, again := fuzzServe(t, fc, h, "GET", "/service/"+c.service, nil)
		if !bytes.Equal(got, again) {
			t.Fatalf("%q: GET answered %s, then after putting it back %s", body, got, again)
		}
	})
}
