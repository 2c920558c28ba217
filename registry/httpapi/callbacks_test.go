package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// fakeCallbacks is a Controller that serves callbacks too, in memory,
// counting the writes that reach it.
type fakeCallbacks struct {
	*fakeControl
	cmu    sync.Mutex
	cbs    map[string]registry.Callback
	writes int
}

func newFakeCallbacks() *fakeCallbacks {
	return &fakeCallbacks{fakeControl: newFake(), cbs: map[string]registry.Callback{}}
}

func (f *fakeCallbacks) AddCallback(ctx context.Context, cb registry.Callback) (registry.Callback, error) {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	f.writes++
	cb.ID = fmt.Sprintf("cb_%016x", len(f.cbs)+1)
	if cb.Secret == "" {
		cb.Secret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	}
	cb.SetBy = registry.CallerOf(ctx)
	f.cbs[cb.ID] = cb
	return cb, nil
}

func (f *fakeCallbacks) ListCallbacks(context.Context) ([]registry.Callback, error) {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	var out []registry.Callback
	for _, cb := range f.cbs {
		out = append(out, cb) // with its secret: the door must drop it
	}
	slices.SortFunc(out, func(a, b registry.Callback) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f *fakeCallbacks) GetCallback(_ context.Context, id string) (registry.Callback, error) {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	cb, ok := f.cbs[id]
	if !ok {
		return registry.Callback{}, wire.Errorf(wire.CodeNotFound, "no callback %s", id)
	}
	return cb, nil
}

func (f *fakeCallbacks) DeleteCallback(_ context.Context, id string) (string, error) {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	f.writes++
	if _, ok := f.cbs[id]; !ok {
		return "", wire.Errorf(wire.CodeNotFound, "no callback %s", id)
	}
	delete(f.cbs, id)
	return "deleted callback " + id, nil
}

func (f *fakeCallbacks) writeCount() int {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	return f.writes
}

var _ registry.Callbacks = (*fakeCallbacks)(nil)

const testUUID = "0b6e3a4c-6a3f-4c1e-9d1e-2f7d1d9c0a11"

func TestCallbackRoutes(t *testing.T) {
	f := newFakeCallbacks()
	h := New(f, Options{})

	var added registry.Callback
	answer(t, send(t, h, "POST", "/callbacks", `{"url": "https://example.com/hook", "instance": "`+strings.ToUpper(testUUID)+`"}`), http.StatusCreated, &added)
	if added.ID == "" || added.Secret == "" || added.Instance != testUUID || added.URL != "https://example.com/hook" || added.SetBy != "http 127.0.0.1" {
		t.Fatalf("POST /callbacks answered %+v", added)
	}
	answer(t, send(t, h, "POST", "/callbacks/", `{"url": "http://127.0.0.1:9000/", "service": "svc", "secret": "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="}`), http.StatusCreated, nil)
	answer(t, send(t, h, "POST", "/callbacks", `{"url": "http://127.0.0.1:9000/all"}`), http.StatusCreated, nil)

	var list []registry.Callback
	answer(t, send(t, h, "GET", "/callbacks", ""), http.StatusOK, &list)
	if len(list) != 3 || list[1].Service != "svc" || list[2].Instance != "" || list[2].Service != "" {
		t.Fatalf("GET /callbacks answered %+v", list)
	}
	for _, cb := range list {
		if cb.Secret != "" {
			t.Errorf("GET /callbacks shows the secret of %s", cb.ID)
		}
	}
	var one registry.Callback
	answer(t, send(t, h, "GET", "/callbacks/"+added.ID, ""), http.StatusOK, &one)
	if one.ID != added.ID || one.Secret != "" {
		t.Fatalf("GET /callbacks/%s answered %+v", added.ID, one)
	}
	var msg messageAnswer
	answer(t, send(t, h, "DELETE", "/callbacks/"+added.ID, ""), http.StatusOK, &msg)
	if msg.Message != "deleted callback "+added.ID {
		t.Fatalf("DELETE answered %+v", msg)
	}
	refusal(t, send(t, h, "GET", "/callbacks/"+added.ID, ""), http.StatusNotFound, wire.CodeNotFound)
	refusal(t, send(t, h, "DELETE", "/callbacks/"+added.ID, ""), http.StatusNotFound, wire.CodeNotFound)
	refusal(t, send(t, h, "PUT", "/callbacks/"+added.ID, `{}`), http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	refusal(t, send(t, h, "GET", "/callbacks/a/b", ""), http.StatusNotFound, wire.CodeNotFound)
}

func TestCallbackBadInputWritesNothing(t *testing.T) {
	f := newFakeCallbacks()
	h := New(f, Options{Token: "s3cret", MaxBody: 4096})
	auth := []string{"Authorization", "Bearer s3cret"}
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code, says               string
	}{
		{"malformed", "POST", "/callbacks", `{"url": `, auth, 400, wire.CodeBadRequest, "malformed JSON"},
		{"not an object", "POST", "/callbacks", `["http://h/"]`, auth, 400, wire.CodeBadRequest, "want a JSON object"},
		{"empty", "POST", "/callbacks", ``, auth, 415, CodeUnsupportedMediaType, "Content-Type"},
		{"unknown field", "POST", "/callbacks", `{"url": "http://h/", "events": ["x"]}`, auth, 400, wire.CodeBadRequest, `unknown field "events"`},
		{"trailing data", "POST", "/callbacks", `{"url": "http://h/"}}`, auth, 400, wire.CodeBadRequest, "invalid"},
		{"wrong type", "POST", "/callbacks", `{"url": 3}`, auth, 400, wire.CodeBadRequest, "invalid url"},
		{"no url", "POST", "/callbacks", `{"service": "svc"}`, auth, 400, wire.CodeBadRequest, "url: missing"},
		{"ftp", "POST", "/callbacks", `{"url": "ftp://h/x"}`, auth, 400, wire.CodeBadRequest, "http:// or https://"},
		{"file", "POST", "/callbacks", `{"url": "file:///etc/passwd"}`, auth, 400, wire.CodeBadRequest, "http:// or https://"},
		{"no host", "POST", "/callbacks", `{"url": "https:/hook"}`, auth, 400, wire.CodeBadRequest, "no host"},
		{"both", "POST", "/callbacks", `{"url": "http://h/", "service": "svc", "instance": "` + testUUID + `"}`, auth, 400, wire.CodeBadRequest, "give one of them"},
		{"bad uuid", "POST", "/callbacks", `{"url": "http://h/", "instance": "x"}`, auth, 400, wire.CodeBadRequest, "not a UUID"},
		{"bad secret", "POST", "/callbacks", `{"url": "http://h/", "secret": "hunter2"}`, auth, 400, wire.CodeBadRequest, "whsec_"},
		{"too large", "POST", "/callbacks", `{"url": "http://h/` + strings.Repeat("a", 5000) + `"}`, auth, 413, wire.CodeTooLarge, "at most 4096"},
		{"no token", "POST", "/callbacks", `{"url": "http://h/"}`, nil, 401, CodeUnauthorized, "missing token"},
		{"wrong token", "POST", "/callbacks", `{"url": "http://h/"}`, []string{"Authorization", "Bearer nope"}, 401, CodeUnauthorized, "wrong token"},
		{"delete without token", "DELETE", "/callbacks/cb_0000000000000001", "", nil, 401, CodeUnauthorized, "missing token"},
		{"read without token", "GET", "/callbacks", "", nil, 401, CodeUnauthorized, "missing token"},
		{"bad id", "DELETE", "/callbacks/nope", "", auth, 400, wire.CodeBadRequest, "callback id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := tc.hdr
			if tc.name == "empty" {
				hdr = append(hdr, "Content-Type", "")
			}
			msg := refusal(t, send(t, h, tc.method, tc.path, tc.body, hdr...), tc.status, tc.code)
			if !strings.Contains(msg, tc.says) {
				t.Errorf("message %q does not say %q", msg, tc.says)
			}
		})
	}
	if n := f.writeCount(); n != 0 {
		t.Errorf("%d writes reached the Controller", n)
	}
}

// Without callbacks behind it (an allocator's connector, a Controller
// that is not a registry.Callbacks) the routes are 404.
func TestCallbackRoutesOnlyWhereServed(t *testing.T) {
	refusal(t, send(t, New(newFake(), Options{}), "GET", "/callbacks", ""), http.StatusNotFound, wire.CodeNotFound)
	f := newFakeCallbacks()
	h := New(f, Options{NodeScope: "n1"})
	refusal(t, send(t, h, "GET", "/callbacks", ""), http.StatusNotFound, wire.CodeNotFound)
	refusal(t, send(t, h, "POST", "/callbacks", `{"url": "http://h/"}`), http.StatusNotFound, wire.CodeNotFound)
	if f.writeCount() != 0 {
		t.Error("a connector added a callback")
	}
}

// FuzzCallbackBody posts arbitrary bodies to /callbacks: an answer is a
// 201 whose callback is valid, or a 4xx error that wrote nothing.
func FuzzCallbackBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		fc := newFakeCallbacks()
		h := New(fc, Options{MaxBody: 4096})
		status, _ := fuzzServe(t, fc.fakeControl, h, "POST", "/callbacks", body)
		if status >= 400 {
			if fc.writeCount() != 0 {
				t.Fatalf("%q refused with %d but written", body, status)
			}
			return
		}
		if status != http.StatusCreated || len(fc.cbs) != 1 {
			t.Fatalf("%q: status %d, %d callbacks", body, status, len(fc.cbs))
		}
		for _, cb := range fc.cbs {
			if err := registry.ValidateCallback(&cb); err != nil {
				t.Fatalf("%q accepted an invalid callback %+v: %v", body, cb, err)
			}
		}
	})
}
