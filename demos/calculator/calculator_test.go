package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/demos/demoservice/demotest"
)

// get sends GET url and returns the status and body.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	return demotest.Call(t, "GET", url, "")
}

func TestCalculate(t *testing.T) {
	ts := httptest.NewServer(newCalculator())
	defer ts.Close()
	tests := []struct {
		query string
		want  string // the whole body
	}{
		{"/add?a=1&b=2", `{"result":3}`},
		{"/sub?a=1&b=2", `{"result":-1}`},
		{"/mul?a=2.5&b=-4", `{"result":-10}`},
		{"/div?a=1&b=4", `{"result":0.25}`},
		{"/div?a=0&b=-3", `{"result":-0}`},
		{"/add?a=1e300&b=-1e300", `{"result":0}`},
		{"/add?a=%2B1&b=2", `{"result":3}`}, // %2B is '+'
	}
	for _, tt := range tests {
		code, body := get(t, ts.URL+tt.query)
		if code != http.StatusOK || strings.TrimSpace(string(body)) != tt.want {
			t.Errorf("GET %s: %d %s, want 200 %s", tt.query, code, body, tt.want)
		}
	}
}

func TestCalculateErrors(t *testing.T) {
	ts := httptest.NewServer(newCalculator())
	defer ts.Close()
	tests := []struct {
		query     string
		status    int
		param     string
		errSubstr string
	}{
		{"/add?b=2", 400, "a", "missing parameter a"},
		{"/add?a=1", 400, "b", "missing parameter b"},
		{"/add?a=&b=2", 400, "a", "missing parameter a"},
		{"/sub?a=one&b=2", 400, "a", `"one" is not a finite number`},
		{"/mul?a=1&b=NaN", 400, "b", "not a finite number"},
		{"/mul?a=1&b=Inf", 400, "b", "not a finite number"},
		{"/mul?a=1e400&b=1", 400, "a", "not a finite number"},
		{"/add?a=1&a=2&b=3", 400, "a", "given 2 times"},
		{"/add?a=1&b=+2", 400, "b", `" 2" is not a finite number`}, // a bare '+' is a space
		{"/div?a=1&b=0", 400, "b", "division by zero"},
		{"/div?a=0&b=0", 400, "b", "division by zero"},
		{"/mul?a=1e200&b=1e200", 400, "", "too large"},
	}
	for _, tt := range tests {
		code, body := get(t, ts.URL+tt.query)
		var e errorReply
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("GET %s: body is not JSON: %s", tt.query, body)
			continue
		}
		if code != tt.status || e.Param != tt.param || !strings.Contains(e.Error, tt.errSubstr) {
			t.Errorf("GET %s: %d %+v, want %d naming %q and saying %q", tt.query, code, e, tt.status, tt.param, tt.errSubstr)
		}
	}
}

func TestOtherRoutes(t *testing.T) {
	ts := httptest.NewServer(newCalculator())
	defer ts.Close()
	if code, body := get(t, ts.URL+"/healthz"); code != 200 || string(body) != "ok\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
	if code, _ := get(t, ts.URL+"/pow?a=1&b=2"); code != http.StatusNotFound {
		t.Errorf("GET /pow: %d, want 404", code)
	}
	resp, err := http.Post(ts.URL+"/add?a=1&b=2", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /add: %d, want 405", resp.StatusCode)
	}
}
