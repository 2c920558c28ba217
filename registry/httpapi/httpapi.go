// Package httpapi is the HTTP door of every control operation: seed 000's
// /compute and /service/<name>/scale, seed 001's /service CRUD,
// /service/<name>/scale and /service/<name>/status, and /status, served
// over any registry.Controller (SPEC.md section 12); seed 003's instance
// lifecycle under /instances when the Controller is also a
// registry.Lifecycle (instances.go); seed 002's autoscaling policies under
// /service/<name>/autoscale when it is a registry.Autoscalers
// (autoscale.go); the node records under /nodes when it is a NodeLister
// (nodes.go). registry-service serves it on -api-listen over its own
// control; an allocator serves it on -connector-listen with
// Options.NodeScope set, as a Genisys connector for its own node.
//
// Every answer is JSON with a trailing newline; every error is
// {"code": "...", "message": "..."} with the wire code (common/wire) and
// the HTTP status it maps to. A refused request (unknown route, wrong
// method, missing token, bad body) never reaches the Controller.
//
//	h := httpapi.New(control, httpapi.Options{Token: token, Logger: log})
//	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
//
// docs/reference/http-api.md documents every route with curl examples.
package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// DefaultMaxBody bounds a request body when Options.MaxBody is not set.
const DefaultMaxBody = 1 << 20

// RequestTimeout bounds one request's call to the Controller.
const RequestTimeout = 30 * time.Second

// Error codes of the HTTP door alone, beside common/wire's.
const (
	CodeUnauthorized         = "unauthorized"           // 401: no or wrong bearer token
	CodeMethodNotAllowed     = "method_not_allowed"     // 405: see the Allow header
	CodeUnsupportedMediaType = "unsupported_media_type" // 415: a body that is not application/json
)

// Options configure the handler New returns. The zero value serves every
// route without a token (New says whom that trusts).
type Options struct {
	// Token, when not empty, is required as "Authorization: Bearer <token>"
	// for writes, and for reads unless PublicRead.
	Token string
	// PublicRead lets reads (GET, HEAD) through without the token.
	PublicRead bool
	// MaxBody bounds a request body (default DefaultMaxBody, 1 MiB); larger
	// is 413 {"code":"too_large",...}.
	MaxBody int64
	// NodeScope, when set, makes this an allocator's connector (seed 001's
	// protocol for one node): scale and status act on the compute of that
	// name alone; /compute endpoints answer 404; /service CRUD passes
	// through.
	NodeScope string
	// Logger receives a line per write and per failure (default: discard).
	Logger *slog.Logger
}

// New returns the HTTP API over c.
//
// Writes (every method but GET and HEAD) need the token when Options.Token
// is set; so do reads unless PublicRead. Without a token the API trusts
// whoever reaches it, so on a loopback connection it answers only
// requests addressed (the Host header) to an IP address or to localhost:
// a web page cannot reach it through a DNS name rebound to 127.0.0.1.
// (A listener beyond loopback without a token, such as an allocator's
// connector, trusts its network: any Host goes.) Request bodies must be
// application/json, which a browser cannot send to another origin without
// asking first. Each request's call to c runs under RequestTimeout, with
// the caller recorded by registry.WithCaller ("http 127.0.0.1", or "http
// token 10.0.0.5" when it gave the token).
func New(c registry.Controller, o Options) http.Handler {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{c: c, o: o, log: o.Logger}
	if o.Token != "" {
		sum := sha256.Sum256([]byte(o.Token))
		h.tokenSum = sum[:]
	}
	h.routes = map[string]map[string]handlerFunc{
		routeComputes: {http.MethodGet: h.listComputes, http.MethodPost: h.postCompute},
		routeCompute:  {http.MethodGet: h.getCompute, http.MethodPut: h.putCompute, http.MethodDelete: h.deleteCompute},
		routeServices: {http.MethodGet: h.listServices, http.MethodPost: h.postService},
		routeService:  {http.MethodGet: h.getService, http.MethodPut: h.putService, http.MethodDelete: h.deleteService},
		routeScale:    {http.MethodPost: h.scale},
		routeStatus:   {http.MethodGet: h.status},
		routeStatuses: {http.MethodGet: h.statusAll},
	}
	h.addLifecycle(c)
	h.addCallbackRoutes()
	h.addVersionRoutes()
	h.addRolloutRoutes()
	h.addAutoscaleRoutes()
	h.addEventRoutes()
	h.addNodeRoutes()
	return h
}

// Route keys: the paths, with {name} for the path segment handlers get.
const (
	routeComputes = "/compute"
	routeCompute  = "/compute/{name}"
	routeServices = "/service"
	routeService  = "/service/{name}"
	routeScale    = "/service/{name}/scale"
	routeStatus   = "/service/{name}/status"
	routeStatuses = "/status"
)

// request is what a handler gets: the request's context (with its
// deadline and caller), the {name} of its path and, for POST and PUT, its
// body.
type request struct {
	ctx  context.Context
	name string
	body []byte
	// query is the URL's query.
	query url.Values
	// w and r are for a handler that streams its answer (/v1/events).
	w http.ResponseWriter
	r *http.Request
}

// handlerFunc answers one route and method: a status and a value to write
// as JSON, or an error that the one wrapper (ServeHTTP) writes.
type handlerFunc func(q *request) (int, any, error)

type handler struct {
	c        registry.Controller
	o        Options
	log      *slog.Logger
	tokenSum []byte // sha256 of the token, nil without one
	routes   map[string]map[string]handlerFunc
	shut     shutdowns // ends event streams when their server shuts down
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status, v, err := h.serve(w, r)
	if _, ok := v.(streamed); ok && err == nil {
		return // the handler wrote its answer
	}
	if err != nil {
		e := toWire(err)
		status = StatusOf(e.Code)
		v = e
		switch {
		case status >= 500:
			h.log.Error("http request failed", "method", r.Method, "path", r.URL.Path, "status", status, "remote", r.RemoteAddr, "err", err)
		default:
			h.log.Debug("http request refused", "method", r.Method, "path", r.URL.Path, "status", status, "remote", r.RemoteAddr, "err", err)
		}
		if status == http.StatusUnauthorized {
			challenge := `Bearer realm="physarum"`
			if r.Header.Get("Authorization") != "" {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
		}
	} else if isWrite(r.Method) {
		h.log.Info("http write", "method", r.Method, "path", r.URL.Path, "status", status, "remote", r.RemoteAddr)
	}
	h.write(w, status, v)
}

// serve routes, checks and reads the request, then runs its handler.
func (h *handler) serve(w http.ResponseWriter, r *http.Request) (int, any, error) {
	key, name, ok := match(r.URL)
	if !ok {
		return 0, nil, wire.Errorf(wire.CodeNotFound, "no route %s %s: see /compute, /service, /service/<name>, /service/<name>/scale, /service/<name>/status, /service/<name>/autoscale, /status, /nodes, /instances, /callbacks and /v1/events", r.Method, r.URL.Path)
	}
	if h.o.NodeScope != "" && (key == routeComputes || key == routeCompute) {
		return 0, nil, wire.Errorf(wire.CodeNotFound, "an allocator's connector has no computes: it is compute %q alone; computes are registry-service's (its -api-listen)", h.o.NodeScope)
	}
	methods, ok := h.routes[key]
	if !ok {
		return 0, nil, h.unserved(key, r)
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	fn, ok := methods[method]
	if !ok {
		allow := allowed(methods)
		w.Header().Set("Allow", allow)
		return 0, nil, wire.Errorf(CodeMethodNotAllowed, "%s %s: allowed methods are %s", r.Method, r.URL.Path, allow)
	}
	if err := h.checkHost(r); err != nil {
		return 0, nil, err
	}
	authed, err := h.authorize(r)
	if err != nil {
		return 0, nil, err
	}
	q := &request{name: name, query: r.URL.Query(), w: w, r: r}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if q.body, err = h.readBody(w, r); err != nil {
			return 0, nil, err
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), RequestTimeout)
	defer cancel()
	q.ctx = registry.WithCaller(ctx, caller(r, authed))
	return fn(q)
}

// match finds the route of a path: its key and its {name} segment. Each
// segment is unescaped on its own, so an escaped slash stays inside a
// name (which name validation then refuses). One trailing slash is
// allowed. The name is folded to lower case: the registry's names are all
// lower case, and seed 000's example scales "myService".
func match(u *url.URL) (key, name string, ok bool) {
	p := u.EscapedPath()
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	if !strings.HasPrefix(p, "/") {
		return "", "", false
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		d, err := url.PathUnescape(s)
		if err != nil || d == "" {
			return "", "", false
		}
		segs[i] = d
	}
	if len(segs) >= 2 {
		segs[1] = strings.ToLower(segs[1])
	}
	switch {
	case len(segs) == 1 && segs[0] == "compute":
		return routeComputes, "", true
	case len(segs) == 2 && segs[0] == "compute":
		return routeCompute, segs[1], true
	case len(segs) == 1 && segs[0] == "service":
		return routeServices, "", true
	case len(segs) == 2 && segs[0] == "service":
		return routeService, segs[1], true
	case len(segs) == 3 && segs[0] == "service" && segs[2] == "scale":
		return routeScale, segs[1], true
	case len(segs) == 3 && segs[0] == "service" && segs[2] == "status":
		return routeStatus, segs[1], true
	case len(segs) == 3 && segs[0] == "service" && segs[2] == "autoscale":
		return routeAutoscale, segs[1], true
	case len(segs) == 3 && segs[0] == "service" && segs[2] == "versions":
		return matchVersions(segs)
	case len(segs) == 3 && segs[0] == "service" && (segs[2] == "promote" || segs[2] == "rollback"):
		return matchRollouts(segs)
	case len(segs) == 1 && segs[0] == "status":
		return routeStatuses, "", true
	case segs[0] == "instances":
		return matchInstances(segs)
	case segs[0] == "callbacks":
		return matchCallbacks(segs)
	case len(segs) == 2 && segs[0] == "v1" && segs[1] == "events":
		return routeEvents, "", true
	case len(segs) == 1 && segs[0] == "nodes":
		return routeNodes, "", true
	}
	return "", "", false
}

// allowed lists a route's methods for the Allow header (HEAD with GET).
func allowed(methods map[string]handlerFunc) string {
	var out []string
	for m := range methods {
		out = append(out, m)
		if m == http.MethodGet {
			out = append(out, http.MethodHead)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead
}

// checkHost refuses, when there is no token, requests that came in on
// loopback addressed to a name other than localhost: a DNS name an
// attacker's page rebinds to 127.0.0.1 would otherwise reach a loopback
// API that trusts every caller. A request whose connection's local
// address is unknown is checked too.
func (h *handler) checkHost(r *http.Request) error {
	if h.tokenSum != nil || r.Host == "" {
		return nil
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok && !la.IP.IsLoopback() {
		return nil
	}
	host := r.Host
	if hp, _, err := net.SplitHostPort(host); err == nil {
		host = hp
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return nil
	}
	return wire.Errorf(wire.CodeForbidden, "host %q: without an API token this API answers only requests addressed to an IP address or localhost", r.Host)
}

// authorize checks the bearer token where one is needed, in constant time
// (the token's and the given value's hashes are compared). It reports
// whether the request carried the right token.
func (h *handler) authorize(r *http.Request) (bool, error) {
	if h.tokenSum == nil {
		return false, nil
	}
	got, ok := bearer(r.Header.Get("Authorization"))
	if ok {
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], h.tokenSum) == 1 {
			return true, nil
		}
	}
	if !isWrite(r.Method) && h.o.PublicRead {
		return false, nil
	}
	what := "reads and writes need"
	if h.o.PublicRead {
		what = "writes need"
	}
	if r.Header.Get("Authorization") == "" {
		return false, wire.Errorf(CodeUnauthorized, "missing token: %s \"Authorization: Bearer <token>\"", what)
	}
	return false, wire.Errorf(CodeUnauthorized, "wrong token: %s \"Authorization: Bearer <token>\" with this API's token", what)
}

// bearer returns the token of an "Authorization: Bearer <token>" value.
func bearer(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// caller is who asks, for registry.WithCaller: the remote address without
// its port, and whether it gave the token.
func caller(r *http.Request, authed bool) string {
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	if authed {
		return "http token " + addr
	}
	return "http " + addr
}

// readBody reads a JSON request body of at most MaxBody bytes. Every
// write needs the JSON Content-Type, even without a body: a web page of
// another origin cannot send one without a preflight, which the API never
// grants, so it cannot act through a browser on the loopback API.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		if ct == "" {
			ct = "none"
		}
		return nil, wire.Errorf(CodeUnsupportedMediaType, "Content-Type %s: send a JSON body with \"Content-Type: application/json\" (curl: -H 'Content-Type: application/json')", ct)
	}
	if r.ContentLength > h.o.MaxBody {
		return nil, tooLarge(r.ContentLength, h.o.MaxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBody))
	if err != nil {
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge(-1, mbe.Limit)
		}
		return nil, wire.Errorf(wire.CodeBadRequest, "read body: %v", err)
	}
	return body, nil
}

func tooLarge(n, limit int64) error {
	if n >= 0 {
		return wire.Errorf(wire.CodeTooLarge, "body of %d bytes: at most %d bytes", n, limit)
	}
	return wire.Errorf(wire.CodeTooLarge, "body over %d bytes", limit)
}

// write sends v as JSON with a trailing newline.
func (h *handler) write(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		h.log.Error("encode http answer", "err", err)
		status = http.StatusInternalServerError
		buf.Reset()
		_ = enc.Encode(wire.Errorf(wire.CodeInternal, "encoding the answer failed"))
	}
	b := buf.Bytes()
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// StatusOf maps an error code (common/wire's, or this package's own) to
// the HTTP status the API answers it with. A code it does not know is a
// failure of something behind the API: 502.
func StatusOf(code string) int {
	switch code {
	case wire.CodeBadRequest:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case wire.CodeForbidden:
		return http.StatusForbidden
	case wire.CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case wire.CodeConflict:
		return http.StatusConflict
	case wire.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case wire.CodeInternal:
		return http.StatusInternalServerError
	case wire.CodeUnsupported:
		return http.StatusNotImplemented
	case wire.CodeUnavailable, wire.CodeNoCapacity:
		return http.StatusServiceUnavailable
	case wire.CodeTimeout:
		return http.StatusGatewayTimeout
	case wire.CodeGone:
		return http.StatusGone
	}
	return http.StatusBadGateway
}

// toWire turns a handler's or the Controller's error into the error the
// API answers: a *wire.Error keeps its code and message; a validation
// failure (registry.ErrInvalid) is bad_request; anything else is kept out
// of the answer (it is logged) as internal.
func toWire(err error) *wire.Error {
	if e, ok := errors.AsType[*wire.Error](err); ok {
		out := &wire.Error{Code: e.Code, Message: e.Message}
		if out.Code == "" {
			out.Code = wire.CodeInternal
		}
		if out.Message == "" {
			out.Message = out.Code
		}
		return out
	}
	switch {
	case errors.Is(err, registry.ErrInvalid):
		return &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}
	case errors.Is(err, registry.ErrNoRegistry):
		return &wire.Error{Code: wire.CodeUnavailable, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return wire.Errorf(wire.CodeTimeout, "the operation ran past its deadline (%s)", RequestTimeout)
	case errors.Is(err, context.Canceled):
		return wire.Errorf(wire.CodeUnavailable, "the request was cancelled")
	}
	return wire.Errorf(wire.CodeInternal, "internal error (the server's log has the cause)")
}

// errorf is a bad_request naming what is wrong.
func errorf(format string, args ...any) error {
	return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}
