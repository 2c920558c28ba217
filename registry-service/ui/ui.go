// Package ui is registry-service's web dashboard: plain HTML, CSS and
// ES modules, embedded in the binary and served under Prefix on the same
// listener as the HTTP API (SPEC.md section 14). The page reads and
// writes only through the public HTTP API (docs/reference/http-api.md),
// so the API's auth rules apply to everything it shows or does; the
// files themselves hold no data and are public.
//
//	h := ui.Mount(httpapi.New(control, opts)) // /ui/ here, the rest to the API
//
// README.md in this folder says how the page is organised.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// Prefix is the path the dashboard is served under.
const Prefix = "/ui/"

//go:embed index.html *.css *.js favicon.svg
var files embed.FS

// file is one embedded file with its ETag.
type file struct {
	body []byte
	etag string
}

var byName = func() map[string]file {
	out := map[string]file{}
	_ = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[p] = file{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	return out
}()

// csp keeps the page to its own files and its own origin: no inline
// script, nothing fetched from elsewhere.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard's files under Prefix: index.html at
// Prefix itself, 404 for anything else. Only GET and HEAD.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		if name == "" {
			name = "index.html"
		}
		f, ok := byName[path.Clean(name)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache") // revalidated by ETag: a new binary shows its new page
		h.Set("ETag", f.etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
	})
}

// Mount serves the dashboard at Prefix (and redirects /ui there) and
// hands every other request to api, untouched.
func Mount(api http.Handler) http.Handler {
	files := Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == strings.TrimSuffix(Prefix, "/"):
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		case strings.HasPrefix(r.URL.Path, Prefix):
			files.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// Size is the bytes of every file the page loads (its weight before
// compression).
func Size() int {
	n := 0
	for _, f := range byName {
		n += len(f.body)
	}
	return n
}

// HeatmapCellsJS is a JavaScript expression that reads the heatmap's
// figures from the rendered page, for browser tests and measurements:
// an object from "<row node>><column node>" to the RTT in ms as text,
// "" for a pair not measured (the diagonal left out). The page keeps
// them in data- attributes (network.js says where).
const HeatmapCellsJS = `(() => {
  const svg = document.querySelector('#heatmap svg[data-cols]');
  if (!svg) return {};
  const cols = JSON.parse(svg.dataset.cols), out = {};
  for (const g of svg.querySelectorAll('g[data-from]')) {
    JSON.parse(g.dataset.rtts).forEach((v, j) => {
      if (cols[j] !== g.dataset.from) out[g.dataset.from + '>' + cols[j]] = v === null ? '' : String(v);
    });
  }
  return out;
})()`
