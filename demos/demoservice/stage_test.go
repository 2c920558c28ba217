package demoservice

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeStage serves h as service name behind a fake proxy (the path starts
// with /name) and returns a stage pointed at it.
func fakeStage(t *testing.T, name string, timeout time.Duration, h http.HandlerFunc) *Stage {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return NewStage(ts.URL, name, "/do", timeout)
}

func wantStageError(t *testing.T, err error, stageName string, status int, substr string) {
	t.Helper()
	var se *StageError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *StageError", err, err)
	}
	if se.Stage != stageName || se.Status != status || !strings.Contains(se.Msg, substr) {
		t.Fatalf("stage error %+v, want stage %q, status %d, message holding %q", se, stageName, status, substr)
	}
}

func TestStagePost(t *testing.T) {
	s := fakeStage(t, "next", time.Minute, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/next/do" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line or headers", 400)
			return
		}
		b, _ := io.ReadAll(r.Body)
		WriteJSON(w, 200, map[string]json.RawMessage{"got": b})
	})
	got, err := s.Post(t.Context(), map[string]int{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"got":{"x":1}}`+"\n" {
		t.Fatalf("answer %s", got)
	}
}

func TestStageFailures(t *testing.T) {
	tests := []struct {
		name   string
		h      http.HandlerFunc
		stage  string // the stage named
		status int
		substr string
	}{
		{"error from the stage", func(w http.ResponseWriter, _ *http.Request) {
			WriteJSON(w, 500, ErrorReply{Error: "boom"})
		}, "next", 500, "next answered 500: boom"},
		{"error from a later stage", func(w http.ResponseWriter, _ *http.Request) {
			WriteJSON(w, 502, ErrorReply{Error: "last is unreachable", Stage: "last"})
		}, "last", 502, "next answered 502: last is unreachable"},
		{"error from the proxy", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set(ProxyErrorHeader, "unavailable")
			WriteJSON(w, 502, map[string]string{"code": "unavailable", "message": "no reachable instance"})
		}, "next", 502, "the proxy, on the way to next, answered 502: no reachable instance (unavailable)"},
		{"plain text error", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "404 page not found", 404)
		}, "next", 404, "next answered 404: 404 page not found"},
		{"empty error", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(503)
		}, "next", 503, "(no body)"},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "<html>")
		}, "next", 200, "not JSON: <html>"},
		{"too large", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`"` + strings.Repeat("x", MaxAnswer) + `"`))
		}, "next", 200, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakeStage(t, "next", time.Minute, tt.h)
			_, err := s.Post(t.Context(), 1)
			wantStageError(t, err, tt.stage, tt.status, tt.substr)
		})
	}
}

func TestStageUnreachable(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	ts.Close()
	_, err := NewStage(ts.URL, "next", "/do", time.Minute).Post(t.Context(), 1)
	wantStageError(t, err, "next", 0, "next is unreachable")
}

// TestStageTimeout points the stage at a handler that does not answer
// until the test ends: the stage's timeout must end the call.
func TestStageTimeout(t *testing.T) {
	release := make(chan struct{})
	s := fakeStage(t, "next", 50*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client leaving
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // before the server closes: cleanups run last first
	_, err := s.Post(t.Context(), 1)
	wantStageError(t, err, "next", 0, "next did not answer within 50ms")
}

func TestProxyBase(t *testing.T) {
	tests := []struct {
		flag    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{env: map[string]string{"PROXY_PORT": "4201"}, want: "http://127.0.0.1:4201"},
		{flag: "http://10.0.0.1:9000/", env: map[string]string{"PROXY_PORT": "4201"}, want: "http://10.0.0.1:9000"},
		{wantErr: "PROXY_PORT is not set"},
		{env: map[string]string{"PROXY_PORT": "x"}, wantErr: `PROXY_PORT="x" is not a port number`},
	}
	for _, tt := range tests {
		got, err := ProxyBase(tt.flag, func(k string) string { return tt.env[k] })
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ProxyBase(%q, %v) = %q, %v; want an error holding %q", tt.flag, tt.env, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ProxyBase(%q, %v) = %q, %v; want %q", tt.flag, tt.env, got, err, tt.want)
		}
	}
	for _, bad := range []string{"127.0.0.1:4201", "ftp://x", "http://", "http://x/?a=1", "::"} {
		if CheckProxy(bad) == nil {
			t.Errorf("CheckProxy(%q) accepted it", bad)
		}
	}
	if err := CheckProxy("http://127.0.0.1:4201"); err != nil {
		t.Error(err)
	}
}

func TestCheckStageFlags(t *testing.T) {
	for _, tt := range []struct {
		proxy   string
		timeout string
		wantErr string // in the error; "" for none
	}{
		{"", "5s", ""},
		{"http://127.0.0.1:4201", "10m", ""},
		{"127.0.0.1:4201", "5s", "-proxy"},
		{"", "0s", "-timeout 0s: want more than 0s and at most 10m0s"},
		{"", "-1s", "-timeout"},
		{"", "10m1s", "-timeout"},
	} {
		d, err := time.ParseDuration(tt.timeout)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckStageFlags(tt.proxy, d)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckStageFlags(%q, %s) = %v; want an error holding %q", tt.proxy, d, err, tt.wantErr)
		}
	}
}

func TestStageWriteError(t *testing.T) {
	s := NewStage("http://127.0.0.1:1", "next", "/do", time.Second)
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&StageError{Stage: "last", Status: 500, Msg: "last answered 500"}, `{"error":"last answered 500","stage":"last","status":500}`},
		{errors.New("not a stage error"), `{"error":"not a stage error","stage":"next"}`},
	} {
		rec := httptest.NewRecorder()
		s.WriteError(rec, tt.err)
		if rec.Code != http.StatusBadGateway || strings.TrimSpace(rec.Body.String()) != tt.want {
			t.Errorf("WriteError(%v): %d %s; want 502 %s", tt.err, rec.Code, rec.Body.String(), tt.want)
		}
	}
}
