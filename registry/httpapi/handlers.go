package httpapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// Answers of writes: the Controller's message and what was written.
type (
	computeAnswer struct {
		Message string           `json:"message"`
		Compute registry.Compute `json:"compute"`
	}
	serviceAnswer struct {
		Message string                    `json:"message"`
		Service registry.ConnectorService `json:"service"`
	}
	scaleAnswer struct {
		Message string           `json:"message"`
		Desired registry.Desired `json:"desired"`
	}
	messageAnswer struct {
		Message string `json:"message"`
	}
)

// createdOrUpdated is the status of a write that creates or replaces:
// 201 when the Controller's message says it added ("added service x,
// version 1"), 200 otherwise ("updated service x, version 2", "service x
// unchanged, version 2").
func createdOrUpdated(msg string) int {
	if strings.HasPrefix(strings.ToLower(msg), "added") {
		return http.StatusCreated
	}
	return http.StatusOK
}

func (h *handler) listComputes(q *request) (int, any, error) {
	cs, err := h.c.ListComputes(q.ctx)
	if err != nil {
		return 0, nil, err
	}
	out := make(map[string]registry.ComputeInfo, len(cs))
	for _, c := range cs {
		out[c.Name] = c
	}
	return http.StatusOK, out, nil
}

func (h *handler) getCompute(q *request) (int, any, error) {
	if err := registry.ValidateComputeName(q.name); err != nil {
		return 0, nil, err
	}
	c, err := h.c.GetCompute(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, c, nil
}

func (h *handler) postCompute(q *request) (int, any, error) {
	c, err := decodeCompute(q.body, "")
	if err != nil {
		return 0, nil, err
	}
	return h.writeCompute(q, c)
}

func (h *handler) putCompute(q *request) (int, any, error) {
	if err := registry.ValidateComputeName(q.name); err != nil {
		return 0, nil, err
	}
	c, err := decodeCompute(q.body, q.name)
	if err != nil {
		return 0, nil, err
	}
	return h.writeCompute(q, c)
}

func (h *handler) writeCompute(q *request, c registry.Compute) (int, any, error) {
	msg, err := h.c.PutCompute(q.ctx, c)
	if err != nil {
		return 0, nil, err
	}
	return createdOrUpdated(msg), computeAnswer{Message: msg, Compute: c}, nil
}

func (h *handler) deleteCompute(q *request) (int, any, error) {
	if err := registry.ValidateComputeName(q.name); err != nil {
		return 0, nil, err
	}
	msg, err := h.c.DeleteCompute(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, messageAnswer{Message: msg}, nil
}

func (h *handler) listServices(q *request) (int, any, error) {
	svcs, err := h.c.ListServices(q.ctx)
	if err != nil {
		return 0, nil, err
	}
	out := make(map[string]registry.ConnectorService, len(svcs))
	for name, info := range svcs {
		out[name] = registry.ConnectorService{Name: name, Info: info}
	}
	return http.StatusOK, out, nil
}

func (h *handler) getService(q *request) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	info, err := h.c.GetService(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, registry.ConnectorService{Name: q.name, Info: info}, nil
}

func (h *handler) postService(q *request) (int, any, error) {
	s, err := decodeService(q.body, "")
	if err != nil {
		return 0, nil, err
	}
	return h.writeService(q, s)
}

func (h *handler) putService(q *request) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	body, strategy, err := splitStrategy(q.body)
	if err != nil {
		return 0, nil, err
	}
	s, err := decodeService(body, q.name)
	if err != nil {
		return 0, nil, err
	}
	if strategy != nil {
		return h.update(q, s, *strategy)
	}
	return h.writeService(q, s)
}

// update rolls a service out to a new definition (PUT /service/<name>
// with a "strategy" object).
func (h *handler) update(q *request, s registry.ConnectorService, st registry.Strategy) (int, any, error) {
	u, ok := h.c.(registry.Updaters)
	if !ok || h.o.NodeScope != "" {
		return 0, nil, wire.Errorf(wire.CodeNotFound, "updates with a strategy are served by registry-service's HTTP API, not here")
	}
	ro, err := u.Update(q.ctx, s.Name, s.Info, st)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, rolloutAnswer{Message: fmt.Sprintf("rolling %s out from version %d to %d", s.Name, ro.From, ro.To), Rollout: ro}, nil
}

// rolloutAnswer answers an update.
type rolloutAnswer struct {
	Message string           `json:"message"`
	Rollout registry.Rollout `json:"rollout"`
}

func (h *handler) writeService(q *request, s registry.ConnectorService) (int, any, error) {
	msg, err := h.c.AddService(q.ctx, s.Name, s.Info)
	if err != nil {
		return 0, nil, err
	}
	return createdOrUpdated(msg), serviceAnswer{Message: msg, Service: s}, nil
}

func (h *handler) deleteService(q *request) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	msg, err := h.c.DeleteService(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, messageAnswer{Message: msg}, nil
}

// scale sets a desired count. Under NodeScope the compute is the node's
// own; a body naming another is refused.
func (h *handler) scale(q *request) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	s, err := decodeScale(q.body)
	if err != nil {
		return 0, nil, err
	}
	if scope := h.o.NodeScope; scope != "" {
		if s.Compute != "" && s.Compute != scope {
			return 0, nil, errorf("invalid compute: %s: this connector scales compute %s alone (its allocator's node); leave compute out or ask registry-service", quote(s.Compute), quote(scope))
		}
		s.Compute = scope
	}
	d, err := h.c.Scale(q.ctx, q.name, s.Compute, s.Number)
	if err != nil {
		return 0, nil, err
	}
	compute := d.Compute
	if compute == "" {
		compute = registry.ComputePhysarum
	}
	msg := fmt.Sprintf("scaled service %s to %d on compute %s", q.name, d.Number, compute)
	return http.StatusOK, scaleAnswer{Message: msg, Desired: d}, nil
}

func (h *handler) status(q *request) (int, any, error) {
	if err := registry.ValidateName(q.name); err != nil {
		return 0, nil, err
	}
	st, err := h.c.Status(q.ctx, q.name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, h.scoped(st), nil
}

// statusAll answers every service's status, keyed by name as /service and
// /compute are.
func (h *handler) statusAll(q *request) (int, any, error) {
	sts, err := h.c.StatusAll(q.ctx)
	if err != nil {
		return 0, nil, err
	}
	out := make(map[string]registry.ServiceStatus, len(sts))
	for _, st := range sts {
		out[st.Service] = h.scoped(st)
	}
	return http.StatusOK, out, nil
}

// scoped is a status as this door shows it: narrowed to NodeScope's
// compute when set, with empty collections rather than null.
func (h *handler) scoped(st registry.ServiceStatus) registry.ServiceStatus {
	if h.o.NodeScope != "" {
		st = Narrow(st, h.o.NodeScope)
	}
	if st.Computes == nil {
		st.Computes = map[string]registry.ComputeStatus{}
	}
	if st.Instances == nil {
		st.Instances = []registry.InstanceStatus{}
	}
	return st
}

// Narrow is a service's status on one compute alone, as an allocator's
// connector reports it: the top-level figures (running_resources,
// desired, starting, failed) are the compute's; instances are the pinned
// ones of that compute and the on-demand ones on the node of that name
// (an allocator's compute is named after it), which on_demand counts when
// running.
func Narrow(st registry.ServiceStatus, compute string) registry.ServiceStatus {
	cs, ok := st.Computes[compute]
	out := registry.ServiceStatus{
		Service:          st.Service,
		RunningResources: cs.Running,
		Desired:          cs.Desired,
		Starting:         cs.Starting,
		Failed:           cs.Failed,
		Computes:         map[string]registry.ComputeStatus{},
		Instances:        []registry.InstanceStatus{},
	}
	if ok {
		out.Computes[compute] = cs
	}
	for _, in := range st.Instances {
		switch {
		case in.Compute == compute && !in.OnDemand:
			out.Instances = append(out.Instances, in)
		case in.OnDemand && in.NodeName == compute:
			out.Instances = append(out.Instances, in)
			if in.State == registry.StateRunning {
				out.OnDemand++
			}
		}
	}
	return out
}
