package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// fakeControl is an in-memory registry.Controller that records every
// call: this package is the HTTP layer only, so its tests check what
// reaches the Controller and how its answers and errors are written.
// End-to-end tests against a real network are registry-service's.
type fakeControl struct {
	mu       sync.Mutex
	services map[string]registry.ServiceInfo
	computes map[string]registry.Compute // the operator's
	desired  map[[2]string]registry.Desired
	statuses map[string]registry.ServiceStatus // canned answers of Status
	launched map[string]registry.LaunchedInstance
	// autoscale holds the policies set, by service.
	autoscale map[string]registry.AutoscaleState
	calls     []call
	// err, when set, is what every method returns.
	err error
}

// call is one Controller call as the fake saw it.
type call struct {
	op      string
	service string
	compute string
	number  int
	info    registry.ServiceInfo
	conn    string // PutCompute's connector
	launch  registry.LaunchRequest
	uuid    string // a launched instance's (GetLaunched, Act, Forget)
	action  string
	policy  registry.AutoscalePolicy // SetAutoscale's
	caller  string
	// deadline is how long the call had left.
	deadline time.Duration
}

var writeOps = []string{"AddService", "DeleteService", "Scale", "PutCompute", "DeleteCompute", "Launch", "Act", "Forget",
	"SetAutoscale", "DeleteAutoscale"}

func newFake() *fakeControl {
	return &fakeControl{
		services: map[string]registry.ServiceInfo{},
		computes: map[string]registry.Compute{},
		desired:  map[[2]string]registry.Desired{},
		statuses: map[string]registry.ServiceStatus{},
		launched: map[string]registry.LaunchedInstance{},

		autoscale: map[string]registry.AutoscaleState{},
	}
}

func (f *fakeControl) record(ctx context.Context, c call) error {
	c.caller = registry.CallerOf(ctx)
	if dl, ok := ctx.Deadline(); ok {
		c.deadline = time.Until(dl)
	}
	f.calls = append(f.calls, c)
	return f.err
}

// writes returns the write calls recorded.
func (f *fakeControl) writes() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if slices.Contains(writeOps, c.op) {
			out = append(out, c)
		}
	}
	return out
}

// last returns the last call recorded.
func (f *fakeControl) last(t *testing.T) call {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("no call reached the Controller")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeControl) AddService(ctx context.Context, name string, info registry.ServiceInfo) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "AddService", service: name, info: info}); err != nil {
		return "", err
	}
	_, existed := f.services[name]
	f.services[name] = info
	if existed {
		return "updated service " + name, nil
	}
	return "added service " + name, nil
}

func (f *fakeControl) GetService(ctx context.Context, name string) (registry.ServiceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "GetService", service: name}); err != nil {
		return registry.ServiceInfo{}, err
	}
	info, ok := f.services[name]
	if !ok {
		return registry.ServiceInfo{}, wire.Errorf(wire.CodeNotFound, "service %s not found", name)
	}
	return info, nil
}

func (f *fakeControl) ListServices(ctx context.Context) (map[string]registry.ServiceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "ListServices"}); err != nil {
		return nil, err
	}
	out := map[string]registry.ServiceInfo{}
	for k, v := range f.services {
		out[k] = v
	}
	return out, nil
}

func (f *fakeControl) DeleteService(ctx context.Context, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "DeleteService", service: name}); err != nil {
		return "", err
	}
	if _, ok := f.services[name]; !ok {
		return "", wire.Errorf(wire.CodeNotFound, "service %s not found", name)
	}
	delete(f.services, name)
	return "deleted service " + name, nil
}

func (f *fakeControl) Scale(ctx context.Context, service, compute string, number int) (registry.Desired, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "Scale", service: service, compute: compute, number: number}); err != nil {
		return registry.Desired{}, err
	}
	if compute == "" {
		compute = registry.ComputePhysarum
	}
	if _, ok := f.services[service]; !ok {
		return registry.Desired{}, wire.Errorf(wire.CodeNotFound, "service %s not found", service)
	}
	if _, ok := f.computes[compute]; !ok && compute != registry.ComputePhysarum {
		return registry.Desired{}, wire.Errorf(wire.CodeNotFound, "no compute named %q", compute)
	}
	d := registry.Desired{Service: service, Compute: compute, Number: number, SetBy: registry.CallerOf(ctx), SetAt: time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)}
	f.desired[[2]string{service, compute}] = d
	return d, nil
}

func (f *fakeControl) Status(ctx context.Context, service string) (registry.ServiceStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "Status", service: service}); err != nil {
		return registry.ServiceStatus{}, err
	}
	return f.statusLocked(service)
}

func (f *fakeControl) statusLocked(service string) (registry.ServiceStatus, error) {
	if st, ok := f.statuses[service]; ok {
		return st, nil
	}
	if _, ok := f.services[service]; !ok {
		return registry.ServiceStatus{}, wire.Errorf(wire.CodeNotFound, "service %s not found", service)
	}
	// Everything desired runs.
	st := registry.ServiceStatus{Service: service, Computes: map[string]registry.ComputeStatus{}}
	for k, d := range f.desired {
		if k[0] != service {
			continue
		}
		st.Desired += d.Number
		st.RunningResources += d.Number
		st.Computes[k[1]] = registry.ComputeStatus{Desired: d.Number, Running: d.Number, SetBy: d.SetBy}
	}
	return st, nil
}

func (f *fakeControl) StatusAll(ctx context.Context) ([]registry.ServiceStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "StatusAll"}); err != nil {
		return nil, err
	}
	var names []string
	for n := range f.services {
		names = append(names, n)
	}
	for n := range f.statuses {
		if _, ok := f.services[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []registry.ServiceStatus
	for _, n := range names {
		st, err := f.statusLocked(n)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (f *fakeControl) computeInfo(c registry.Compute) registry.ComputeInfo {
	sel, _ := registry.ParseConnector(c.Connector)
	return registry.ComputeInfo{Compute: c, Kind: sel.Kind, Nodes: []string{}}
}

func (f *fakeControl) ListComputes(ctx context.Context) ([]registry.ComputeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "ListComputes"}); err != nil {
		return nil, err
	}
	out := []registry.ComputeInfo{{Compute: registry.Compute{Name: registry.ComputePhysarum, Connector: registry.ComputePhysarum}, Kind: registry.KindNetwork, Builtin: true, Nodes: []string{"n1"}}}
	for _, c := range f.computes {
		out = append(out, f.computeInfo(c))
	}
	return out, nil
}

func (f *fakeControl) GetCompute(ctx context.Context, name string) (registry.ComputeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "GetCompute", compute: name}); err != nil {
		return registry.ComputeInfo{}, err
	}
	c, ok := f.computes[name]
	if !ok {
		return registry.ComputeInfo{}, wire.Errorf(wire.CodeNotFound, "no compute named %q", name)
	}
	return f.computeInfo(c), nil
}

func (f *fakeControl) PutCompute(ctx context.Context, c registry.Compute) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "PutCompute", compute: c.Name, conn: c.Connector}); err != nil {
		return "", err
	}
	if c.Name == registry.ComputePhysarum {
		return "", wire.Errorf(wire.CodeConflict, "compute %q is built in (the whole network): choose another name", c.Name)
	}
	_, existed := f.computes[c.Name]
	f.computes[c.Name] = c
	if existed {
		return "updated compute " + c.Name, nil
	}
	return "added compute " + c.Name, nil
}

func (f *fakeControl) DeleteCompute(ctx context.Context, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "DeleteCompute", compute: name}); err != nil {
		return "", err
	}
	if _, ok := f.computes[name]; !ok {
		return "", wire.Errorf(wire.CodeNotFound, "no compute named %q defined by an operator", name)
	}
	delete(f.computes, name)
	return "deleted compute " + name, nil
}

var _ registry.Controller = (*fakeControl)(nil)

// The fake's lifecycle: a launch is pending at once and never placed;
// actions change the state as Control's answer would show it.

// fakeCreated is when the fake says instances were launched.
var fakeCreated = time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)

func (f *fakeControl) Launch(ctx context.Context, r registry.LaunchRequest) (registry.LaunchedInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "Launch", service: r.Service, compute: r.Compute, launch: r}); err != nil {
		return registry.LaunchedInstance{}, err
	}
	if _, ok := f.services[r.Service]; !ok {
		return registry.LaunchedInstance{}, wire.Errorf(wire.CodeNotFound, "no service named %q", r.Service)
	}
	if r.UUID == "" {
		r.UUID = fmt.Sprintf("00000000-0000-4000-8000-%012d", len(f.launched)+1)
	}
	if _, ok := f.launched[r.UUID]; ok {
		return registry.LaunchedInstance{}, wire.Errorf(wire.CodeConflict, "an instance with UUID %s exists", r.UUID)
	}
	li := registry.LaunchedInstance{UUID: r.UUID, Service: r.Service, Compute: cmp.Or(r.Compute, registry.ComputePhysarum),
		State: registry.StatePending, Want: "running", Created: fakeCreated, SetBy: registry.CallerOf(ctx)}
	if r.Callback != "" {
		li.Callback, li.CallbackSecret = "cb_0123456789abcdef", "whsec_AAAAAAAAAAAAAAAAAAAAAA=="
	}
	f.launched[r.UUID] = li
	return li, nil
}

func (f *fakeControl) GetLaunched(ctx context.Context, uuid string) (registry.LaunchedInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "GetLaunched", uuid: uuid}); err != nil {
		return registry.LaunchedInstance{}, err
	}
	li, ok := f.launched[uuid]
	if !ok {
		return registry.LaunchedInstance{}, wire.Errorf(wire.CodeNotFound, "no launched instance %s", uuid)
	}
	li.CallbackSecret = ""
	return li, nil
}

func (f *fakeControl) ListLaunched(ctx context.Context, service string) ([]registry.LaunchedInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "ListLaunched", service: service}); err != nil {
		return nil, err
	}
	var out []registry.LaunchedInstance
	for _, li := range f.launched {
		if service == "" || li.Service == service {
			li.CallbackSecret = ""
			out = append(out, li)
		}
	}
	slices.SortFunc(out, func(a, b registry.LaunchedInstance) int { return strings.Compare(a.UUID, b.UUID) })
	return out, nil
}

func (f *fakeControl) Act(ctx context.Context, uuid, action string) (registry.LaunchedInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "Act", uuid: uuid, action: action}); err != nil {
		return registry.LaunchedInstance{}, err
	}
	li, ok := f.launched[uuid]
	if !ok {
		return registry.LaunchedInstance{}, wire.Errorf(wire.CodeNotFound, "no launched instance %s", uuid)
	}
	switch action {
	case registry.ActionStop:
		li.Want, li.State = "stopped", registry.StateStopped
	case registry.ActionStart:
		li.Want, li.State = "running", registry.StateRunning
	case registry.ActionReboot:
		li.State = registry.StateRunning
		li.Restarts++
	default:
		return registry.LaunchedInstance{}, wire.Errorf(wire.CodeBadRequest, "unknown action %q", action)
	}
	li.CallbackSecret = ""
	f.launched[uuid] = li
	return li, nil
}

func (f *fakeControl) Forget(ctx context.Context, uuid string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "Forget", uuid: uuid}); err != nil {
		return "", err
	}
	if _, ok := f.launched[uuid]; !ok {
		return "", wire.Errorf(wire.CodeNotFound, "no launched instance %s", uuid)
	}
	delete(f.launched, uuid)
	return "forgot instance " + uuid, nil
}

var _ registry.Lifecycle = (*fakeControl)(nil)

// The fake's autoscaling keeps policies as Control does: checked (an
// invalid one is bad_request, which a door must never let through: the
// fuzz targets fail on a refused body that reached a write), with their
// defaults filled in and the compute physarum when left out; the service
// and the compute must exist.

// fakeSetAt is when the fake says policies were set.
var fakeSetAt = time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)

func (f *fakeControl) SetAutoscale(ctx context.Context, service string, p registry.AutoscalePolicy) (registry.AutoscaleState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "SetAutoscale", service: service, policy: p}); err != nil {
		return registry.AutoscaleState{}, err
	}
	if err := p.Validate(); err != nil {
		return registry.AutoscaleState{}, wire.Errorf(wire.CodeBadRequest, "%s", err)
	}
	if _, ok := f.services[service]; !ok {
		return registry.AutoscaleState{}, wire.Errorf(wire.CodeNotFound, "no service named %q", service)
	}
	p = p.WithDefaults()
	p.Compute = cmp.Or(p.Compute, registry.ComputePhysarum)
	if _, ok := f.computes[p.Compute]; !ok && p.Compute != registry.ComputePhysarum {
		return registry.AutoscaleState{}, wire.Errorf(wire.CodeNotFound, "no compute named %q", p.Compute)
	}
	st := registry.AutoscaleState{Service: service, Policy: p, SetBy: registry.CallerOf(ctx), SetAt: fakeSetAt}
	if old, ok := f.autoscale[service]; ok {
		st.Last = old.Last
	}
	f.autoscale[service] = st
	return st, nil
}

func (f *fakeControl) GetAutoscale(ctx context.Context, service string) (registry.AutoscaleState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "GetAutoscale", service: service}); err != nil {
		return registry.AutoscaleState{}, err
	}
	st, ok := f.autoscale[service]
	if !ok {
		return registry.AutoscaleState{}, wire.Errorf(wire.CodeNotFound, "service %q has no autoscaling policy", service)
	}
	return st, nil
}

func (f *fakeControl) DeleteAutoscale(ctx context.Context, service string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, call{op: "DeleteAutoscale", service: service}); err != nil {
		return "", err
	}
	if _, ok := f.autoscale[service]; !ok {
		return "", wire.Errorf(wire.CodeNotFound, "service %q has no autoscaling policy", service)
	}
	delete(f.autoscale, service)
	return "autoscaling off for " + service + "; its desired count stays as it is", nil
}

var _ registry.Autoscalers = (*fakeControl)(nil)

type httptestRecorder = httptest.ResponseRecorder

// send serves one request through h, addressed to 127.0.0.1:7001 (see
// sendTo).
func send(t *testing.T, h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	return sendTo(t, h, "127.0.0.1:7001", method, path, body, hdr...)
}

// sendTo serves one request to host through h, from 127.0.0.1; a
// non-empty body goes as application/json. hdr is pairs of header names
// and values (an empty value removes the header).
func sendTo(t *testing.T, h http.Handler, host, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := newRequest(t, host, method, path, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			r.Header.Del(hdr[i])
		} else {
			r.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return serve(h, r)
}

// newRequest is a request to host from 127.0.0.1, with a non-empty body
// as application/json.
func newRequest(t *testing.T, host, method, path, body string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:7001"+path, strings.NewReader(body))
	r.Host = host
	r.RemoteAddr = "127.0.0.1:40000"
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// answer checks that w is a JSON answer with status want, ending in a
// newline, and decodes it into v (when not nil).
func answer(t *testing.T, w *httptest.ResponseRecorder, want int, v any) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status %d, want %d; body %s", w.Code, want, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if !strings.HasSuffix(w.Body.String(), "}\n") && !strings.HasSuffix(w.Body.String(), "]\n") {
		t.Fatalf("body does not end in a JSON value and a newline: %q", w.Body)
	}
	if v == nil {
		return
	}
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode answer %s: %v", w.Body, err)
	}
}

// refusal checks that w is a JSON error with status want and code, and
// returns its message.
func refusal(t *testing.T, w *httptest.ResponseRecorder, want int, code string) string {
	t.Helper()
	var e wire.Error
	answer(t, w, want, &e)
	if e.Code != code || e.Message == "" {
		t.Fatalf("error %+v, want code %q and a message", e, code)
	}
	return e.Message
}
