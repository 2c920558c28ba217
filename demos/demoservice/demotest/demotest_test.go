package demotest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestEnvWith(t *testing.T) {
	base := Env{"A": "1"}
	e := base.With("B", "2", "A", "3")
	if e.Getenv("A") != "3" || e.Getenv("B") != "2" || e.Getenv("C") != "" {
		t.Errorf("With: %v", e)
	}
	if base["A"] != "1" || len(base) != 1 {
		t.Errorf("With changed the base: %v", base)
	}
	if e := Env(nil).With("A", "1"); e.Getenv("A") != "1" {
		t.Errorf("With on nil: %v", e)
	}
}

func TestNextStage(t *testing.T) {
	type value struct{ N int }
	next := &NextStage[value]{Path: "/svc/do", Answer: func(w http.ResponseWriter, _ value) {
		w.WriteHeader(http.StatusAccepted)
	}}
	ts := httptest.NewServer(next)
	defer ts.Close()
	for _, tt := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/svc/do", `{"N":1}`, http.StatusAccepted},
		{"POST", "/svc/do", `{"N":2}`, http.StatusAccepted},
		{"GET", "/svc/do", "", http.StatusNotFound},
		{"POST", "/svc/other", `{"N":3}`, http.StatusNotFound},
		{"POST", "/svc/do", `{"N":"x"}`, http.StatusBadRequest},
	} {
		if code, body := Call(t, tt.method, ts.URL+tt.path, tt.body); code != tt.code {
			t.Errorf("%s %s %s: %d %s, want %d", tt.method, tt.path, tt.body, code, body, tt.code)
		}
	}
	if got := next.Got(); len(got) != 2 || got[0].N != 1 || got[1].N != 2 {
		t.Errorf("Got() = %+v, want the two values taken", got)
	}
}

func TestCallSendsJSON(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write([]byte(r.Method + " " + r.Header.Get("Content-Type") + " " + string(b)))
	}))
	defer ts.Close()
	if code, body := Call(t, "POST", ts.URL, `{}`); code != 200 || string(body) != "POST application/json {}" {
		t.Errorf("POST with a body: %d %q", code, body)
	}
	if code, body := Call(t, "GET", ts.URL, ""); code != 200 || string(body) != "GET  " {
		t.Errorf("GET: %d %q", code, body)
	}
}
