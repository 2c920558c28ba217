package ui_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/registry-service/ui"
)

func TestFilesAreServedUnderUI(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-API", "1")
		_, _ = w.Write([]byte(r.URL.Path))
	})
	srv := httptest.NewServer(ui.Mount(api))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, tc := range []struct {
		path, ctype string
		status      int
	}{
		{"/ui/", "text/html", 200},
		{"/ui/index.html", "text/html", 200},
		{"/ui/app.js", "text/javascript", 200},
		{"/ui/style.css", "text/css", 200},
		{"/ui/favicon.svg", "image/svg+xml", 200},
		{"/ui/README.md", "", 404},
		{"/ui/ui.go", "", 404},
		{"/ui/../go.mod", "", 404},
		{"/ui", "", 301},
	} {
		resp, err := noRedirect.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.ctype)
		}
		if tc.status == 200 && (resp.Header.Get("ETag") == "" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'")) {
			t.Errorf("GET %s: no ETag or CSP: %v", tc.path, resp.Header)
		}
	}

	// Revalidation by ETag.
	resp, _ := http.Get(srv.URL + "/ui/app.js")
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/app.js", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %v %v", resp, err)
	}

	// Writes are not the files' business, and the API gets everything else untouched.
	if resp, _ := http.Post(srv.URL+"/ui/", "text/plain", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/: %d", resp.StatusCode)
	}
	for _, p := range []string{"/service", "/v1/events", "/uix", "/"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil || resp.Header.Get("X-API") != "1" {
			t.Errorf("GET %s did not reach the API: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	if ui.Size() < 1000 {
		t.Errorf("Size %d", ui.Size())
	}
}
