package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/physarum-p2p/physarum/registry"
)

// Rollouts (SPEC.md section 12, "Updates"): PUT /service/<name> with a
// "strategy" object starts one (see putService); POST
// /service/<name>/promote ends a blue-green rollout's rollback window,
// and POST /service/<name>/rollback goes back to the definition the
// running rollout started from. Both answer {"message", "rollout"}, the
// rollout as it now stands (the revert, for a rollback), and 409 when no
// rollout of the service runs (or, for promote, a blue-green one has not
// switched yet). They are served when the Controller is also a
// registry.Updaters: registry-service's control, not an allocator's
// connector.

// Route keys of the rollout actions.
const (
	routePromote  = "/service/{name}/promote"
	routeRollback = "/service/{name}/rollback"
)

// addRolloutRoutes adds the rollout actions when h's Controller rolls
// services out.
func (h *handler) addRolloutRoutes() {
	u, ok := h.c.(registry.Updaters)
	if !ok || h.o.NodeScope != "" {
		return
	}
	h.routes[routePromote] = map[string]handlerFunc{
		http.MethodPost: func(q *request) (int, any, error) { return rolloutAction(q, "promoted", u.Promote) },
	}
	h.routes[routeRollback] = map[string]handlerFunc{
		http.MethodPost: func(q *request) (int, any, error) { return rolloutAction(q, "rolling back", u.Rollback) },
	}
}

// matchRollouts routes /service/<name>/promote and .../rollback (segs[0]
// is "service").
func matchRollouts(segs []string) (key, name string, ok bool) {
	if len(segs) != 3 {
		return "", "", false
	}
	switch segs[2] {
	case "promote":
		return routePromote, segs[1], true
	case "rollback":
		return routeRollback, segs[1], true
	}
	return "", "", false
}

func rolloutAction(q *request, did string, act func(ctx context.Context, service string) (registry.Rollout, error)) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	ro, err := act(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	msg := fmt.Sprintf("%s %s: %s", did, q.name, ro.Message)
	return http.StatusOK, rolloutAnswer{Message: msg, Rollout: ro}, nil
}
