package registry

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"time"
)

// The instance lifecycle (seed 003, SPEC.md section 12): instances launched
// under a UUID the caller may choose, acted on (start, stop, reboot) and
// forgotten, each change an event that streams and calls back. These
// types are shared by every door, like control.go's.

// Lifecycle states beyond an instance record's own (State*).
const (
	// StateLost: the instance's node left (its lease ran out) while the
	// instance was meant to run.
	StateLost = "lost"
)

// Actions on a launched instance.
const (
	ActionStart  = "start"
	ActionStop   = "stop"
	ActionReboot = "reboot"
)

// Actions lists the valid actions, as an error names them.
var Actions = []string{ActionStart, ActionStop, ActionReboot}

// LaunchRequest launches one pinned instance of a service.
type LaunchRequest struct {
	// UUID is the caller's name for the instance (RFC 4122 text form);
	// empty: one is assigned.
	UUID    string `json:"uuid,omitempty"`
	Service string `json:"service"`
	// Compute restricts placement ("" means ComputePhysarum).
	Compute string `json:"compute,omitempty"`
	// Callback, when set, is an http(s) URL called back on every change
	// of this instance (a callback for the instance is created with it).
	Callback string `json:"callback,omitempty"`
}

// InstanceAddrs are where a launched instance answers.
type InstanceAddrs struct {
	// PeerID and Multiaddrs are its proxy's libp2p identity and addresses.
	PeerID     string   `json:"peer_id,omitempty"`
	Multiaddrs []string `json:"multiaddrs,omitempty"`
	// Host and Ports are where its service and proxy listen on its node.
	Host  string         `json:"host,omitempty"`
	Ports *InstancePorts `json:"ports,omitempty"`
}

// LaunchedInstance is a launched instance as the lifecycle API shows it.
type LaunchedInstance struct {
	UUID    string `json:"uuid"`
	Service string `json:"service"`
	Compute string `json:"compute"`
	// State is pending, starting, running, stopping, stopped, failed or
	// lost.
	State string `json:"state"`
	// Want is what the caller asked for: "running" or "stopped".
	Want string `json:"want"`
	// Node is the allocator's name, NodeID its peer ID (once placed).
	Node   string        `json:"node,omitempty"`
	NodeID string        `json:"node_id,omitempty"`
	Addrs  InstanceAddrs `json:"addrs"`
	// Version is the version of the service's definition it runs
	// (Instance.Version; 0 before it starts).
	Version  int       `json:"version,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Restarts int       `json:"restarts"`
	// Message says why it failed, was lost, or cannot start.
	Message string `json:"message,omitempty"`
	// Callback is the id of the callback created with it.
	Callback string `json:"callback,omitempty"`
	// CallbackSecret is that callback's signing secret: in Launch's
	// answer only, never after.
	CallbackSecret string    `json:"callback_secret,omitempty"`
	Created        time.Time `json:"created"`
	SetBy          string    `json:"set_by,omitempty"`
}

// Lifecycle is the instance lifecycle, behind every door as Controller is.
type Lifecycle interface {
	// Launch records the instance as wanted (state pending) and returns
	// at once; the leader's reconciler places and starts it.
	Launch(ctx context.Context, r LaunchRequest) (LaunchedInstance, error)
	GetLaunched(ctx context.Context, uuid string) (LaunchedInstance, error)
	// ListLaunched lists launched instances, of one service or all ("").
	ListLaunched(ctx context.Context, service string) ([]LaunchedInstance, error)
	// Act starts, stops or reboots a launched instance.
	Act(ctx context.Context, uuid, action string) (LaunchedInstance, error)
	// Forget stops the instance and deletes its record.
	Forget(ctx context.Context, uuid string) (string, error)
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// NormalizeUUID lower-cases a UUID and checks its text form.
func NormalizeUUID(s string) (string, error) {
	u := strings.ToLower(strings.TrimSpace(s))
	if !uuidRE.MatchString(u) {
		return "", invalid("uuid", "%.80q is not a UUID (8-4-4-4-12 hexadecimal digits)", s)
	}
	return u, nil
}

// Event is one change of the control plane's state (SPEC.md section 12):
// services, desired counts, computes, nodes, instances, launched
// instances. Index is the etcd revision of the change; the events of one
// revision share it and are delivered together, in order.
type Event struct {
	// ID is unique: "<index>-<n>", n counting the events of the
	// revision from 0. It is a callback's webhook-id.
	ID    string    `json:"id"`
	Index int64     `json:"index"`
	Time  time.Time `json:"time"`
	// Topic is one of the Topic* constants.
	Topic string `json:"topic"`
	// Type is created, updated or deleted, or for instances lost.
	Type string `json:"type"`
	// Key names the thing: a service, "service/compute", a compute, a
	// node's peer ID, "service/instance-id", a launched instance's UUID.
	Key string `json:"key"`
	// Object is the record after the change (before it, for deleted and
	// lost).
	Object json.RawMessage `json:"object,omitempty"`
}

// Event topics.
const (
	TopicService  = "service"
	TopicDesired  = "desired"
	TopicCompute  = "compute"
	TopicNode     = "node"
	TopicInstance = "instance"
	TopicLaunched = "launched"
	// TopicAutoscale: a service's autoscaling policy (key: the service)
	// and its decisions (key: "<service>/decision").
	TopicAutoscale = "autoscale"
	// TopicRollout: a service's last rollout (key: the service).
	TopicRollout = "rollout"
)

// Event types.
const (
	EventCreated = "created"
	EventUpdated = "updated"
	EventDeleted = "deleted"
	EventLost    = "lost"
	// EventHeartbeat is the line a stream sends while nothing happens;
	// its Index is the store's revision then.
	EventHeartbeat = "heartbeat"
)

// Matches reports whether e passes a topic filter: "instance" matches
// every instance event, "instance:svc" those of service svc (keys
// "svc/..."), "launched:<uuid>" one launched instance. No filter
// matches everything.
func (e Event) Matches(filters []string) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		topic, key, hasKey := strings.Cut(f, ":")
		if topic != e.Topic {
			continue
		}
		if !hasKey || e.Key == key || strings.HasPrefix(e.Key, key+"/") {
			return true
		}
	}
	return false
}

// ValidateTopic checks a topic filter.
func ValidateTopic(f string) error {
	topic, key, hasKey := strings.Cut(f, ":")
	if hasKey && key == "" {
		return invalid("topic", "%.80q: a key after ':' (e.g. instance:hello), or no ':'", f)
	}
	switch topic {
	case TopicService, TopicDesired, TopicCompute, TopicNode, TopicInstance, TopicLaunched, TopicAutoscale, TopicRollout:
		return nil
	}
	return invalid("topic", "%.80q: want service, desired, compute, node, instance, launched, autoscale or rollout, optionally :<key>", f)
}

// Callback is a webhook registered for one instance, one service, or
// everything (SPEC.md section 12, "Callbacks").
type Callback struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Instance (a launched instance's UUID) or Service restrict what is
	// delivered; neither: every event.
	Instance string `json:"instance,omitempty"`
	Service  string `json:"service,omitempty"`
	// Secret signs deliveries ("whsec_" and base64 of the key, as
	// Standard Webhooks has it). It is returned when the callback is
	// created, never after.
	Secret  string    `json:"secret,omitempty"`
	Created time.Time `json:"created"`
	SetBy   string    `json:"set_by,omitempty"`
	// Delivery state.
	Pending      int       `json:"pending"`
	Delivered    int64     `json:"delivered"`
	LastSuccess  time.Time `json:"last_success,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	Disabled     bool      `json:"disabled,omitempty"`
	// DisabledReason says why delivery stopped (Disabled).
	DisabledReason string `json:"disabled_reason,omitempty"`
	// Skipped says which events were never delivered: the store had
	// compacted them away before delivery reached them.
	Skipped string `json:"skipped,omitempty"`
	// Cursor is the index of the last event delivered.
	Cursor int64 `json:"cursor"`
}

// Callbacks manages callbacks, behind every door.
type Callbacks interface {
	AddCallback(ctx context.Context, c Callback) (Callback, error)
	ListCallbacks(ctx context.Context) ([]Callback, error)
	GetCallback(ctx context.Context, id string) (Callback, error)
	DeleteCallback(ctx context.Context, id string) (string, error)
}
