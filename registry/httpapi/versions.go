package httpapi

import (
	"net/http"

	"github.com/physarum-p2p/physarum/registry"
)

// Versions (SPEC.md section 12, "Updates"): GET /service/<name>/versions
// lists the versions the registry keeps of a service's definition
// (registry.ServiceVersionsKept at most), newest (the current one) first:
// {"service": "<name>", "versions": [registry.ServiceVersion...]}. It is
// served when the Controller is also a registry.VersionHistory:
// registry-service's control, and the registry client behind an
// allocator's connector, which passes /service reads through.

// routeVersions is the route key of a service's versions.
const routeVersions = "/service/{name}/versions"

// versionsAnswer is the answer of GET /service/<name>/versions.
type versionsAnswer struct {
	Service  string                    `json:"service"`
	Versions []registry.ServiceVersion `json:"versions"`
}

// addVersionRoutes adds the versions route when h's Controller serves
// versions.
func (h *handler) addVersionRoutes() {
	vh, ok := h.c.(registry.VersionHistory)
	if !ok {
		return
	}
	h.routes[routeVersions] = map[string]handlerFunc{
		http.MethodGet: func(q *request) (int, any, error) { return getVersions(vh, q) },
	}
}

// matchVersions routes /service/<name>/versions (segs[0] is "service").
func matchVersions(segs []string) (key, name string, ok bool) {
	if len(segs) == 3 && segs[2] == "versions" {
		return routeVersions, segs[1], true
	}
	return "", "", false
}

func getVersions(vh registry.VersionHistory, q *request) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	vs, err := vh.History(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	if vs == nil {
		vs = []registry.ServiceVersion{}
	}
	return http.StatusOK, versionsAnswer{Service: q.name, Versions: vs}, nil
}
