package httpapi

import (
	"net/http"
	"strings"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// The instance lifecycle (seed 003, SPEC.md section 12) under /instances:
// launch an instance under a UUID the caller may choose, read it, act on it
// (start, stop, reboot), forget it. Served only when the Controller is
// also a registry.Lifecycle (registry-service's Control is), never on an
// allocator's connector (NodeScope): instances are launched on the
// network, not on one node.
const (
	routeInstances = "/instances"
	routeInstance  = "/instances/{name}"
	routeActions   = "/instances/{name}/actions"
)

// matchInstances finds the /instances routes (segs[0] is "instances").
func matchInstances(segs []string) (key, name string, ok bool) {
	switch {
	case len(segs) == 1:
		return routeInstances, "", true
	case len(segs) == 2:
		return routeInstance, segs[1], true
	case len(segs) == 3 && segs[2] == "actions":
		return routeActions, segs[1], true
	}
	return "", "", false
}

// instances answers the /instances routes over a Lifecycle.
type instances struct{ lc registry.Lifecycle }

// addLifecycle serves /instances when c is also a registry.Lifecycle and
// this is not a node's connector.
func (h *handler) addLifecycle(c registry.Controller) {
	lc, ok := c.(registry.Lifecycle)
	if !ok || h.o.NodeScope != "" {
		return
	}
	in := instances{lc: lc}
	h.routes[routeInstances] = map[string]handlerFunc{http.MethodGet: in.list, http.MethodPost: in.launch}
	h.routes[routeInstance] = map[string]handlerFunc{http.MethodGet: in.get, http.MethodDelete: in.forget}
	h.routes[routeActions] = map[string]handlerFunc{http.MethodPost: in.act}
}

// unserved says why a route this API knows is not served here.
func (h *handler) unserved(key string, r *http.Request) error {
	if strings.HasPrefix(key, routeInstances) {
		if h.o.NodeScope != "" {
			return wire.Errorf(wire.CodeNotFound, "an allocator's connector has no /instances: instances are launched on the network, through registry-service (its -api-listen)")
		}
		return wire.Errorf(wire.CodeNotFound, "this API does not serve /instances (the instance lifecycle is registry-service's)")
	}
	if key == routeAutoscale {
		if h.o.NodeScope != "" {
			return wire.Errorf(wire.CodeNotFound, "an allocator's connector has no autoscaling: set a service's policy on registry-service (its -api-listen)")
		}
		return wire.Errorf(wire.CodeNotFound, "this API does not serve /service/<name>/autoscale (autoscaling policies are registry-service's)")
	}
	return wire.Errorf(wire.CodeNotFound, "no route %s %s: this API does not serve it", r.Method, r.URL.Path)
}

// launchFields are the fields of a POST /instances body.
const launchFields = "a launch takes uuid, service, compute and callback"

// decodeLaunch reads {"uuid", "service", "compute", "callback"}: service
// is mandatory; uuid (RFC 4122 text, lower-cased here), compute and
// callback (an http:// or https:// URL) may be absent. Unknown fields are
// refused.
func decodeLaunch(body []byte) (registry.LaunchRequest, error) {
	var f struct {
		UUID     string `json:"uuid"`
		Service  string `json:"service"`
		Compute  string `json:"compute"`
		Callback string `json:"callback"`
	}
	if err := decodeStrict(body, &f, launchFields); err != nil {
		return registry.LaunchRequest{}, err
	}
	r := registry.LaunchRequest{UUID: f.UUID, Service: f.Service, Compute: f.Compute, Callback: f.Callback}
	if err := registry.ValidateLaunch(&r); err != nil {
		return registry.LaunchRequest{}, err
	}
	return r, nil
}

// decodeAction reads {"action": "start" | "stop" | "reboot"}; anything
// else is refused with the list of valid actions, as seed 003 asks.
func decodeAction(body []byte) (string, error) {
	var f struct {
		Action string `json:"action"`
	}
	if err := decodeStrict(body, &f, "an action takes action alone: "+strings.Join(registry.Actions, ", ")); err != nil {
		return "", err
	}
	if err := registry.ValidateAction(f.Action); err != nil {
		return "", err
	}
	return f.Action, nil
}

// uuidOf checks the {name} of an /instances/<uuid> path.
func uuidOf(q *request) (string, error) {
	return registry.NormalizeUUID(q.name)
}

func (in instances) launch(q *request) (int, any, error) {
	r, err := decodeLaunch(q.body)
	if err != nil {
		return 0, nil, err
	}
	li, err := in.lc.Launch(q.ctx, r)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, li, nil
}

// list answers GET /instances[?service=<name>], oldest first.
func (in instances) list(q *request) (int, any, error) {
	service := ""
	for k, vs := range q.query {
		if k != "service" {
			return 0, nil, errorf("invalid query: unknown parameter %s: /instances takes service", quote(k))
		}
		if len(vs) > 1 {
			return 0, nil, errorf("invalid service: given %d times: give one, or none for every service", len(vs))
		}
		service = vs[0]
	}
	if service != "" {
		if err := registry.ValidateName(service); err != nil {
			return 0, nil, err
		}
	}
	ls, err := in.lc.ListLaunched(q.ctx, service)
	if err != nil {
		return 0, nil, err
	}
	if ls == nil {
		ls = []registry.LaunchedInstance{}
	}
	return http.StatusOK, ls, nil
}

func (in instances) get(q *request) (int, any, error) {
	id, err := uuidOf(q)
	if err != nil {
		return 0, nil, err
	}
	li, err := in.lc.GetLaunched(q.ctx, id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, li, nil
}

// act answers POST /instances/<uuid>/actions with the instance as the
// action left it.
func (in instances) act(q *request) (int, any, error) {
	id, err := uuidOf(q)
	if err != nil {
		return 0, nil, err
	}
	action, err := decodeAction(q.body)
	if err != nil {
		return 0, nil, err
	}
	li, err := in.lc.Act(q.ctx, id, action)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, li, nil
}

func (in instances) forget(q *request) (int, any, error) {
	id, err := uuidOf(q)
	if err != nil {
		return 0, nil, err
	}
	msg, err := in.lc.Forget(q.ctx, id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, messageAnswer{Message: msg}, nil
}
