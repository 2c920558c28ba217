package demoservice

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestListenAddr(t *testing.T) {
	tests := []struct {
		flag    string
		env     map[string]string
		want    string
		wantErr string // in the error; "" for none
		noEnv   bool   // the error wraps ErrNoEnv
	}{
		{env: map[string]string{"SERVICE_PORT": "8080"}, want: "127.0.0.1:8080"},
		{env: map[string]string{"SERVICE_PORT": "65535"}, want: "127.0.0.1:65535"},
		{flag: "127.0.0.1:0", env: map[string]string{"SERVICE_PORT": "8080"}, want: "127.0.0.1:0"},
		{flag: ":9000", want: ":9000"},
		{wantErr: "SERVICE_PORT is not set; run the service under a Physarum proxy, or pass -listen", noEnv: true},
		{env: map[string]string{"SERVICE_PORT": "http"}, wantErr: `SERVICE_PORT="http" is not a port number (1 to 65535)`},
		{env: map[string]string{"SERVICE_PORT": "0"}, wantErr: "not a port number"},
		{env: map[string]string{"SERVICE_PORT": "65536"}, wantErr: "not a port number"},
	}
	for _, tt := range tests {
		got, err := ListenAddr(tt.flag, func(k string) string { return tt.env[k] })
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, ErrNoEnv) != tt.noEnv {
				t.Errorf("ListenAddr(%q, %v) = %q, %v; want an error holding %q (ErrNoEnv: %t)", tt.flag, tt.env, got, err, tt.wantErr, tt.noEnv)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ListenAddr(%q, %v) = %q, %v; want %q", tt.flag, tt.env, got, err, tt.want)
		}
	}
}

func TestPortFromEnv(t *testing.T) {
	env := map[string]string{"P": "4201", "BAD": "-1"}
	getenv := func(k string) string { return env[k] }
	if port, err := PortFromEnv(getenv, "P"); err != nil || port != 4201 {
		t.Errorf("PortFromEnv(P) = %d, %v; want 4201", port, err)
	}
	if _, err := PortFromEnv(getenv, "MISSING"); !errors.Is(err, ErrNoEnv) || err.Error() != "MISSING is not set" {
		t.Errorf("PortFromEnv(MISSING): %v; want %q wrapping ErrNoEnv", err, "MISSING is not set")
	}
	if _, err := PortFromEnv(getenv, "BAD"); err == nil || errors.Is(err, ErrNoEnv) || !strings.Contains(err.Error(), `BAD="-1" is not a port number`) {
		t.Errorf("PortFromEnv(BAD): %v", err)
	}
}

func TestCheckListen(t *testing.T) {
	for _, good := range []string{"127.0.0.1:8080", ":9000", "[::1]:0", "localhost:http"} {
		if err := CheckListen(good); err != nil {
			t.Errorf("CheckListen(%q): %v", good, err)
		}
	}
	for _, bad := range []string{"8080", "x", "127.0.0.1", ""} {
		if err := CheckListen(bad); err == nil || !strings.Contains(err.Error(), "want host:port") {
			t.Errorf("CheckListen(%q) = %v; want an error", bad, err)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusTeapot, map[string]int{"a": 1})
	if rec.Code != http.StatusTeapot || rec.Body.String() != `{"a":1}`+"\n" {
		t.Errorf("answer %d %q", rec.Code, rec.Body.String())
	}
	h := rec.Header()
	if h.Get("Content-Type") != "application/json" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Content-Length") != "8" {
		t.Errorf("headers %v", h)
	}

	rec = httptest.NewRecorder()
	WriteJSON(rec, http.StatusOK, math.NaN()) // does not encode
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != `{"error":"internal error: encode the answer"}`+"\n" {
		t.Errorf("answer to a value that does not encode: %d %q", rec.Code, rec.Body.String())
	}
}

func TestHealthz(t *testing.T) {
	rec := httptest.NewRecorder()
	Healthz(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" || rec.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("answer %d %q, headers %v", rec.Code, rec.Body.String(), rec.Header())
	}
}

// TestServe serves a handler, cancels the context, and checks that Serve
// logs where it listens and returns nil after shutting down.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	logger := slog.New(slog.NewTextHandler(&log, nil)) // read once Serve has returned
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", Healthz)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, NewServer(mux, logger), ln, logger) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("GET /healthz: %d %q", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if s := log.String(); !strings.Contains(s, "msg=listening addr="+ln.Addr().String()) || !strings.Contains(s, "msg=\"shutting down\"") {
		t.Errorf("log:\n%s", s)
	}
}

// TestServeFails checks that Serve reports a listener that fails.
func TestServeFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	logger := slog.New(slog.DiscardHandler)
	if err := Serve(t.Context(), NewServer(http.NotFoundHandler(), logger), ln, logger); err == nil || !strings.Contains(err.Error(), "serve on "+ln.Addr().String()) {
		t.Fatalf("Serve on a closed listener: %v", err)
	}
}

func TestDecodeJSON(t *testing.T) {
	for _, tt := range []struct {
		body    string
		wantErr string // what the error starts with; "" for none
	}{
		{`{"a":1}`, ""},
		{` {"a":1} ` + "\n", ""},
		{``, "empty body; want an object"},
		{`{"a":1}{"a":2}`, "malformed JSON: more than one JSON value"},
		{`{"a":"x"}`, "malformed JSON: json: cannot unmarshal string"},
		{`{"a":1`, "malformed JSON: unexpected EOF"},
		{`{"a":1,"pad":"` + strings.Repeat("x", 64) + `"}`, "body larger than 64 bytes"},
	} {
		var v struct{ A int }
		rec := httptest.NewRecorder()
		err := DecodeJSON(rec, httptest.NewRequest("POST", "/", strings.NewReader(tt.body)), &v, 64, "an object")
		switch {
		case tt.wantErr == "" && (err != nil || v.A != 1):
			t.Errorf("DecodeJSON(%q): %v, %+v", tt.body, err, v)
		case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
			t.Errorf("DecodeJSON(%q): %v; want %q", tt.body, err, tt.wantErr)
		}
	}
}
