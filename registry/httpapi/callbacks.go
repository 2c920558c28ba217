package httpapi

import (
	"net/http"

	"github.com/physarum-p2p/physarum/registry"
)

// Callbacks (SPEC.md section 12, seed 003): POST /callbacks adds one and
// answers 201 with it, its secret included this once; GET /callbacks
// lists them and GET /callbacks/<id> reads one, with their delivery state
// and never a secret; DELETE /callbacks/<id> removes one. They are served
// when the Controller is also a registry.Callbacks (registry-service's
// control) and this is not an allocator's connector (NodeScope); else
// they are 404 like any unknown route.

// Route keys of the callbacks.
const (
	routeCallbacks = "/callbacks"
	routeCallback  = "/callbacks/{name}"
)

// addCallbackRoutes adds the callback routes when h's Controller serves
// callbacks.
func (h *handler) addCallbackRoutes() {
	cbs, ok := h.c.(registry.Callbacks)
	if !ok || h.o.NodeScope != "" {
		return
	}
	h.routes[routeCallbacks] = map[string]handlerFunc{
		http.MethodGet:  func(q *request) (int, any, error) { return listCallbacks(cbs, q) },
		http.MethodPost: func(q *request) (int, any, error) { return postCallback(cbs, q) },
	}
	h.routes[routeCallback] = map[string]handlerFunc{
		http.MethodGet:    func(q *request) (int, any, error) { return getCallback(cbs, q) },
		http.MethodDelete: func(q *request) (int, any, error) { return deleteCallback(cbs, q) },
	}
}

// matchCallbacks routes /callbacks and /callbacks/<id> (segs[0] is
// "callbacks").
func matchCallbacks(segs []string) (key, name string, ok bool) {
	switch len(segs) {
	case 1:
		return routeCallbacks, "", true
	case 2:
		return routeCallback, segs[1], true
	}
	return "", "", false
}

// decodeCallback reads {"url", "instance" | "service", "secret"}: url is
// mandatory, instance or service at most one (neither: every event),
// secret optional (one is generated); unknown fields are refused. The
// result is validated (registry.ValidateCallback), the instance
// lower-cased.
func decodeCallback(body []byte) (registry.Callback, error) {
	var f struct {
		URL      string `json:"url"`
		Instance string `json:"instance"`
		Service  string `json:"service"`
		Secret   string `json:"secret"`
	}
	if err := decodeStrict(body, &f, "a callback takes url, instance or service, and secret"); err != nil {
		return registry.Callback{}, err
	}
	cb := registry.Callback{URL: f.URL, Instance: f.Instance, Service: f.Service, Secret: f.Secret}
	if err := registry.ValidateCallback(&cb); err != nil {
		return registry.Callback{}, err
	}
	return cb, nil
}

func postCallback(cbs registry.Callbacks, q *request) (int, any, error) {
	cb, err := decodeCallback(q.body)
	if err != nil {
		return 0, nil, err
	}
	out, err := cbs.AddCallback(q.ctx, cb)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, out, nil
}

func listCallbacks(cbs registry.Callbacks, q *request) (int, any, error) {
	out, err := cbs.ListCallbacks(q.ctx)
	if err != nil {
		return 0, nil, err
	}
	if out == nil {
		out = []registry.Callback{}
	}
	for i := range out {
		out[i].Secret = "" // never shown after creation
	}
	return http.StatusOK, out, nil
}

func getCallback(cbs registry.Callbacks, q *request) (int, any, error) {
	if err := registry.ValidateCallbackID(q.name); err != nil {
		return 0, nil, err
	}
	cb, err := cbs.GetCallback(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	cb.Secret = ""
	return http.StatusOK, cb, nil
}

func deleteCallback(cbs registry.Callbacks, q *request) (int, any, error) {
	if err := registry.ValidateCallbackID(q.name); err != nil {
		return 0, nil, err
	}
	msg, err := cbs.DeleteCallback(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, messageAnswer{Message: msg}, nil
}
