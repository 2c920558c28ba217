package registry

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Desired state (SPEC.md section 12): computes, where instances may run,
// and per service and compute a desired count of pinned instances that the
// leader's reconciler keeps running. These types are shared by every door
// (the registry protocol, the HTTP API, an allocator's connector) and by
// registry-cli, so that all of them agree on names and shapes. JSON field
// names follow the Genisys seeds (lower case, running_resources).

// ComputePhysarum is the compute that always exists: the whole network,
// placed by Physarum's own placement. A scale without a compute means it.
const ComputePhysarum = "physarum"

// Compute kinds, derived from a compute's connector.
const (
	// KindNetwork: every allocator ("physarum").
	KindNetwork = "network"
	// KindNode: one allocator, by its -name ("physarum:node?name=n1");
	// every allocator is such a compute under its own name.
	KindNode = "node"
	// KindLabels: the allocators whose labels match
	// ("physarum:labels?site=a&rack=3").
	KindLabels = "labels"
	// KindConnector: an external Genisys connector ("http://host:7051"),
	// driven with seed 001's /service/<name>/scale and /status.
	KindConnector = "connector"
)

// Compute is a place where instances may run, as seed 000 defines it.
type Compute struct {
	Name      string `json:"name"`
	Connector string `json:"connector"`
}

// ComputeInfo is a compute with what Physarum knows about it.
type ComputeInfo struct {
	Compute
	// Kind is one of the Kind* constants.
	Kind string `json:"kind"`
	// Builtin computes ("physarum" and every allocator's own) cannot be
	// changed or deleted.
	Builtin bool `json:"builtin,omitempty"`
	// Nodes are the names of the live allocators the compute covers now
	// (none for an external connector).
	Nodes []string `json:"nodes"`
	// SetBy and SetAt say who defined an operator's compute, and when.
	SetBy string    `json:"set_by,omitempty"`
	SetAt time.Time `json:"set_at,omitzero"`
}

// Selector is a parsed connector.
type Selector struct {
	Kind string
	// Node is the allocator's name (KindNode).
	Node string
	// Labels must all match (KindLabels).
	Labels map[string]string
	// URL is the external connector's base URL (KindConnector).
	URL string
}

// NodeConnector is the connector of an allocator's own compute.
func NodeConnector(name string) string { return "physarum:node?name=" + url.QueryEscape(name) }

// ParseConnector reads a compute's connector: "physarum", "physarum:node?name=N",
// "physarum:labels?k=v[&k=v...]" or an http(s) URL.
func ParseConnector(s string) (Selector, error) {
	switch {
	case s == "":
		return Selector{}, invalid("connector", "empty: want physarum, physarum:labels?key=value, physarum:node?name=N or an http:// URL")
	case len(s) > MaxFieldLen:
		return Selector{}, invalid("connector", "longer than %d characters", MaxFieldLen)
	case s == ComputePhysarum:
		return Selector{Kind: KindNetwork}, nil
	case strings.HasPrefix(s, "physarum:labels?"):
		q, err := url.ParseQuery(strings.TrimPrefix(s, "physarum:labels?"))
		if err != nil || len(q) == 0 {
			return Selector{}, invalid("connector", "%q: want physarum:labels?key=value[&key=value]", s)
		}
		labels := map[string]string{}
		for k, vs := range q {
			if k == "" || len(vs) != 1 {
				return Selector{}, invalid("connector", "%q: each label once, as key=value", s)
			}
			labels[k] = vs[0]
		}
		return Selector{Kind: KindLabels, Labels: labels}, nil
	case strings.HasPrefix(s, "physarum:node?"):
		q, err := url.ParseQuery(strings.TrimPrefix(s, "physarum:node?"))
		if err != nil || len(q) != 1 || len(q["name"]) != 1 {
			return Selector{}, invalid("connector", "%q: want physarum:node?name=<allocator name>", s)
		}
		if err := ValidateComputeName(q.Get("name")); err != nil {
			return Selector{}, err
		}
		return Selector{Kind: KindNode, Node: q.Get("name")}, nil
	case strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return Selector{}, invalid("connector", "%q: want http://host:port of a Genisys connector", s)
		}
		return Selector{Kind: KindConnector, URL: strings.TrimSuffix(s, "/")}, nil
	}
	return Selector{}, invalid("connector", "%q: want physarum, physarum:labels?key=value, physarum:node?name=N or an http:// URL", s)
}

// Matches reports whether an allocator's node record is in the compute.
// An external connector covers no node of Physarum's own.
func (s Selector) Matches(n Node) bool {
	switch s.Kind {
	case KindNetwork:
		return true
	case KindNode:
		return n.Name == s.Node
	case KindLabels:
		for k, v := range s.Labels {
			if got, ok := n.Labels[k]; !ok || got != v {
				return false
			}
		}
		return true
	}
	return false
}

// ValidateComputeName checks a compute's (or an allocator's) name: the
// rules of a service name.
func ValidateComputeName(name string) error {
	if err := ValidateName(name); err != nil {
		return invalid("compute name", "%s", strings.TrimPrefix(err.Error(), "invalid service name: "))
	}
	return nil
}

// Validate checks an operator's compute definition.
func (c Compute) Validate() error {
	if err := ValidateComputeName(c.Name); err != nil {
		return err
	}
	_, err := ParseConnector(c.Connector)
	return err
}

// Desired is the desired count of pinned instances of a service on a
// compute, with who set it and when.
type Desired struct {
	Service string    `json:"service"`
	Compute string    `json:"compute"`
	Number  int       `json:"number"`
	SetBy   string    `json:"set_by"`
	SetAt   time.Time `json:"set_at"`
	// Revision is the registry revision that wrote it: of two scales, the
	// one with the higher revision is the one that stands.
	Revision int64 `json:"revision,omitempty"`
}

// DefaultMaxScale is the largest desired count a scale may ask for unless
// registry-service's -max-scale says otherwise.
const DefaultMaxScale = 1000

// ServiceStatus is what the status operation reports about a service:
// seed 001's running_resources plus Physarum's own figures.
type ServiceStatus struct {
	Service string `json:"service"`
	// RunningResources counts the running pinned instances, every compute
	// together (on-demand ones are in OnDemand).
	RunningResources int `json:"running_resources"`
	Desired          int `json:"desired"`
	Starting         int `json:"starting"`
	Failed           int `json:"failed"`
	// OnDemand counts the running instances started for requests.
	OnDemand int `json:"on_demand"`
	// Computes has one entry per compute with a desired count or pinned
	// instances.
	Computes map[string]ComputeStatus `json:"computes"`
	// Instances are every instance of the service, pinned and on-demand.
	Instances []InstanceStatus `json:"instances"`
	// Autoscale is the service's autoscaling policy and last decision
	// (nil: none).
	Autoscale *AutoscaleState `json:"autoscale,omitempty"`
	// Rollout is the service's last rollout (nil: none).
	Rollout *Rollout `json:"rollout,omitempty"`
	// Route is the rollout's routing, when it has one (a blue-green
	// rollout): which versions serve.
	Route *Route `json:"route,omitempty"`
}

// ComputeStatus is a service's figures on one compute.
type ComputeStatus struct {
	Desired  int `json:"desired"`
	Running  int `json:"running"`
	Starting int `json:"starting"`
	Failed   int `json:"failed"`
	// SetBy and SetAt say who set the desired count, and when.
	SetBy string    `json:"set_by,omitempty"`
	SetAt time.Time `json:"set_at,omitzero"`
	// LastFailure is the reason the last start failed.
	LastFailure string `json:"last_failure,omitempty"`
	// BackoffUntil is set while the reconciler waits before trying again,
	// after starts that keep failing.
	BackoffUntil time.Time `json:"backoff_until,omitzero"`
	// Message says what else stands in the way (no node in the compute, a
	// connector that does not answer).
	Message string `json:"message,omitempty"`
}

// InstanceStatus is one instance as status shows it.
type InstanceStatus struct {
	ID       string    `json:"id"`
	Node     string    `json:"node"`
	NodeName string    `json:"node_name,omitempty"`
	Compute  string    `json:"compute,omitempty"`
	State    string    `json:"state"`
	OnDemand bool      `json:"on_demand"`
	Started  time.Time `json:"started"`
	Restarts int       `json:"restarts,omitempty"`
	Message  string    `json:"message,omitempty"`
	// Version is the version of the service's definition the instance
	// was started from (0: unknown).
	Version int `json:"version,omitempty"`
	// Standby is set on an instance the service's route keeps out of
	// service (the idle set of a blue-green rollout).
	Standby bool `json:"standby,omitempty"`
}

// Controller is every control operation, one implementation behind every
// door: registry-service's Control implements it over etcd, *Client over
// the registry protocol, and the HTTP API (registry/httpapi) serves any
// Controller. Errors the caller can act on are *wire.Error; who is asking
// travels in ctx (WithCaller).
type Controller interface {
	AddService(ctx context.Context, name string, info ServiceInfo) (string, error)
	GetService(ctx context.Context, name string) (ServiceInfo, error)
	ListServices(ctx context.Context) (map[string]ServiceInfo, error)
	DeleteService(ctx context.Context, name string) (string, error)

	// Scale sets the desired count of pinned instances of service on
	// compute ("" means ComputePhysarum).
	Scale(ctx context.Context, service, compute string, number int) (Desired, error)
	// Status reports one service.
	Status(ctx context.Context, service string) (ServiceStatus, error)
	// StatusAll reports every service, by name.
	StatusAll(ctx context.Context) ([]ServiceStatus, error)

	ListComputes(ctx context.Context) ([]ComputeInfo, error)
	GetCompute(ctx context.Context, name string) (ComputeInfo, error)
	// PutCompute defines or redefines an operator's compute.
	PutCompute(ctx context.Context, c Compute) (string, error)
	// DeleteCompute removes an operator's compute; it is refused while a
	// service has a desired count on it.
	DeleteCompute(ctx context.Context, name string) (string, error)
}

var _ Controller = (*Client)(nil)

type callerKey struct{}

// WithCaller records who asks for an operation ("peer 12D3Koo...",
// "http 127.0.0.1", "token"), for SetBy fields and logs.
func WithCaller(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, callerKey{}, who)
}

// CallerOf returns what WithCaller recorded, or "unknown".
func CallerOf(ctx context.Context) string {
	if s, ok := ctx.Value(callerKey{}).(string); ok && s != "" {
		return s
	}
	return "unknown"
}

// Scale sets a desired count through the registry protocol.
func (c *Client) Scale(ctx context.Context, service, compute string, number int) (Desired, error) {
	resp, err := c.call(ctx, Request{Op: OpScale, Name: service, ComputeName: compute, Number: &number})
	if err != nil {
		return Desired{}, fmt.Errorf("scale %s: %w", service, err)
	}
	if resp.Desired == nil {
		return Desired{}, fmt.Errorf("scale %s: empty answer", service)
	}
	return *resp.Desired, nil
}

// Status reads one service's status.
func (c *Client) Status(ctx context.Context, service string) (ServiceStatus, error) {
	resp, err := c.call(ctx, Request{Op: OpStatus, Name: service})
	if err != nil {
		return ServiceStatus{}, fmt.Errorf("status of %s: %w", service, err)
	}
	if len(resp.Statuses) != 1 {
		return ServiceStatus{}, fmt.Errorf("status of %s: %d answers", service, len(resp.Statuses))
	}
	return resp.Statuses[0], nil
}

// StatusAll reads every service's status.
func (c *Client) StatusAll(ctx context.Context) ([]ServiceStatus, error) {
	resp, err := c.call(ctx, Request{Op: OpStatus})
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return resp.Statuses, nil
}

// ListComputes reads every compute.
func (c *Client) ListComputes(ctx context.Context) ([]ComputeInfo, error) {
	resp, err := c.call(ctx, Request{Op: OpComputeList})
	if err != nil {
		return nil, fmt.Errorf("list computes: %w", err)
	}
	return resp.Computes, nil
}

// GetCompute reads one compute.
func (c *Client) GetCompute(ctx context.Context, name string) (ComputeInfo, error) {
	resp, err := c.call(ctx, Request{Op: OpComputeGet, ComputeName: name})
	if err != nil {
		return ComputeInfo{}, fmt.Errorf("get compute %s: %w", name, err)
	}
	if len(resp.Computes) != 1 {
		return ComputeInfo{}, fmt.Errorf("get compute %s: %d answers", name, len(resp.Computes))
	}
	return resp.Computes[0], nil
}

// PutCompute defines or redefines an operator's compute.
func (c *Client) PutCompute(ctx context.Context, cp Compute) (string, error) {
	if err := cp.Validate(); err != nil {
		return "", err
	}
	resp, err := c.call(ctx, Request{Op: OpComputePut, Compute: &cp})
	if err != nil {
		return "", fmt.Errorf("put compute %s: %w", cp.Name, err)
	}
	return resp.Message, nil
}

// DeleteCompute removes an operator's compute.
func (c *Client) DeleteCompute(ctx context.Context, name string) (string, error) {
	resp, err := c.call(ctx, Request{Op: OpComputeDelete, ComputeName: name})
	if err != nil {
		return "", fmt.Errorf("delete compute %s: %w", name, err)
	}
	return resp.Message, nil
}

// SortInstances orders instance statuses as status shows them: by
// compute, node name, then start time.
func SortInstances(in []InstanceStatus) {
	sort.SliceStable(in, func(i, j int) bool {
		a, b := in[i], in[j]
		if a.Compute != b.Compute {
			return a.Compute < b.Compute
		}
		if a.NodeName != b.NodeName {
			return a.NodeName < b.NodeName
		}
		return a.Started.Before(b.Started)
	})
}
