package registry

import (
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/physarum-p2p/physarum/common/wire"
)

// Protocol IDs served by registry-service.
const (
	// Protocol carries one request and one response per stream.
	Protocol protocol.ID = "/physarum/registry/1.0.0"
	// WatchProtocol carries one watch request, then a stream of events.
	WatchProtocol protocol.ID = "/physarum/registry-watch/1.0.0"
	// JoinProtocol is how a new registry-service asks to join the cluster.
	JoinProtocol protocol.ID = "/physarum/registry-join/1.0.0"
	// Rendezvous is the DHT namespace registry-services advertise under.
	Rendezvous = "physarum/registry"
)

// Operations of Protocol.
const (
	OpAdd            = "add"
	OpGet            = "get"
	OpList           = "list"
	OpDelete         = "delete"
	OpMembers        = "members"
	OpNodePut        = "node.put"
	OpNodeList       = "node.list"
	OpNodeDelete     = "node.delete"
	OpInstancePut    = "instance.put"
	OpInstanceDelete = "instance.delete"
	OpInstanceList   = "instance.list"
	// Desired state (registry.Controller).
	OpScale         = "scale"
	OpStatus        = "status"
	OpComputeList   = "compute.list"
	OpComputeGet    = "compute.get"
	OpComputePut    = "compute.put"
	OpComputeDelete = "compute.delete"
)

// Request is the one request message of Protocol; Op says which fields
// matter.
type Request struct {
	Op string `json:"Op"`
	// Name is the service name (add, get, delete, service.history;
	// instance.list filter).
	Name string `json:"Name,omitempty"`
	// Info is the service definition (add).
	Info *ServiceInfo `json:"Info,omitempty"`
	// Node is the sender's node record (node.put).
	Node *Node `json:"Node,omitempty"`
	// TTL is the node record's lease in seconds (node.put).
	TTL int `json:"TTL,omitempty"`
	// Brief asks node.list for the records without what the nodes
	// measure and hold (Node.Brief).
	Brief bool `json:"Brief,omitempty"`
	// Instance is an instance record (instance.put).
	Instance *Instance `json:"Instance,omitempty"`
	// ID names an instance (instance.delete).
	ID string `json:"ID,omitempty"`
	// ComputeName names a compute (scale, compute.get, compute.delete).
	ComputeName string `json:"ComputeName,omitempty"`
	// Number is the desired count (scale).
	Number *int `json:"Number,omitempty"`
	// Compute is a compute definition (compute.put).
	Compute *Compute `json:"Compute,omitempty"`
	// Callback is a callback to add (callback.add); ID names one
	// (callback.get, callback.delete).
	Callback *Callback `json:"Callback,omitempty"`
	// Launch is an instance to launch (launch); UUID names a launched
	// instance (launched.get, launched.act, launched.forget), Action what
	// to do to it (launched.act).
	Launch *LaunchRequest `json:"Launch,omitempty"`
	UUID   string         `json:"UUID,omitempty"`
	Action string         `json:"Action,omitempty"`
	// Autoscale is the policy to set (autoscale.set).
	Autoscale *AutoscalePolicy `json:"Autoscale,omitempty"`
	// Strategy is how an update rolls out (service.update, with Info).
	Strategy *Strategy `json:"Strategy,omitempty"`
}

// Response is the result of Protocol; Op says which fields are set.
type Response struct {
	Message   string                 `json:"Message,omitempty"`
	Info      *ServiceInfo           `json:"Info,omitempty"`
	Services  map[string]ServiceInfo `json:"Services,omitempty"`
	Members   []Member               `json:"Members,omitempty"`
	Nodes     []Node                 `json:"Nodes,omitempty"`
	Instances []Instance             `json:"Instances,omitempty"`
	// Revision is the registry's revision after the operation.
	Revision int64 `json:"Revision,omitempty"`
	// LeaseGranted (node.put) says the node's lease was new: its previous
	// one had expired, taking its instance records, which the node must
	// publish again.
	LeaseGranted bool `json:"LeaseGranted,omitempty"`
	// Desired is the desired count written (scale).
	Desired *Desired `json:"Desired,omitempty"`
	// Statuses answer status: one service, or every one.
	Statuses []ServiceStatus `json:"Statuses,omitempty"`
	// Computes answer compute.list and compute.get.
	Computes []ComputeInfo `json:"Computes,omitempty"`
	// Callbacks answer callback.add, callback.list and callback.get.
	Callbacks []Callback `json:"Callbacks,omitempty"`
	// Launched answers launch, launched.get, launched.list and
	// launched.act.
	Launched []LaunchedInstance `json:"Launched,omitempty"`
	// Autoscale answers autoscale.set and autoscale.get.
	Autoscale *AutoscaleState `json:"Autoscale,omitempty"`
	// Rollouts answer service.update and rollout.list.
	Rollouts []Rollout `json:"Rollouts,omitempty"`
	// Versions answers service.history, newest first.
	Versions []ServiceVersion `json:"Versions,omitempty"`
}

// Member is one registry-service: an etcd voter, a learner catching up, or
// a client of the cluster (beyond the voter cap).
type Member struct {
	// Name is the member's peer ID.
	Name string `json:"Name"`
	// Role is "voter", "learner" or "client".
	Role string `json:"Role"`
	// PeerURLs and ClientURLs are etcd's URLs (voters and learners).
	PeerURLs   []string `json:"PeerURLs,omitempty"`
	ClientURLs []string `json:"ClientURLs,omitempty"`
	// Leader marks the etcd leader.
	Leader bool `json:"Leader,omitempty"`
	// Started is false for a member added but not yet running.
	Started bool `json:"Started"`
	// Healthy says the member answered just now (clients: their record
	// is kept alive, so they are up).
	Healthy bool `json:"Healthy"`
}

// Member roles.
const (
	RoleVoter   = "voter"
	RoleLearner = "learner"
	RoleClient  = "client"
)

// WatchRequest opens a watch on WatchProtocol.
type WatchRequest struct {
	// Kind is "instances" (the only kind so far).
	Kind string `json:"Kind"`
	// Service restricts the watch to one service's instances ("" = all).
	Service string `json:"Service,omitempty"`
}

// WatchKindInstances watches instance records.
const WatchKindInstances = "instances"

// WatchEvent is one frame of a watch stream. The first is a snapshot; then
// puts and deletes in revision order; pings keep an idle stream alive.
type WatchEvent struct {
	// Type is "snapshot", "put", "delete", "route" or "ping".
	Type string `json:"Type"`
	// Instances is the full set (snapshot) or the changed record (put).
	Instances []Instance `json:"Instances,omitempty"`
	// ID is the deleted instance (delete).
	ID string `json:"ID,omitempty"`
	// Routes are the watched services' routes (snapshot: every route in
	// force; route: the one that changed, Version 0 when it ended). A
	// client that does not know routes serves every version.
	Routes []Route `json:"Routes,omitempty"`
	// Revision is the registry revision the event reflects.
	Revision int64 `json:"Revision"`
	// Error ends the stream: the watch could not start or continue.
	Error *wire.Error `json:"Error,omitempty"`
}

// WatchPingEvery is how often an idle watch stream carries a ping; a
// client that hears nothing for three periods reconnects.
const WatchPingEvery = 5 * time.Second

// Watch event types.
const (
	EventSnapshot = "snapshot"
	EventPut      = "put"
	EventDelete   = "delete"
	EventRoute    = "route"
	EventPing     = "ping"
)

// JoinRequest asks a registry member to add the sender to the cluster.
type JoinRequest struct {
	// PeerURLs are the joiner's etcd peer URLs.
	PeerURLs []string `json:"PeerURLs"`
	// ClientURLs are the joiner's etcd client URLs.
	ClientURLs []string `json:"ClientURLs"`
}

// JoinResponse says how to start: as a learner of the cluster described by
// InitialCluster, or (Client) as a client of ClientURLs.
type JoinResponse struct {
	// Client is true when the voter cap is reached: run without a local
	// etcd member, as a client of the cluster.
	Client bool `json:"Client"`
	// InitialCluster is etcd's name=url,... list including the joiner.
	InitialCluster string `json:"InitialCluster,omitempty"`
	// ClusterToken is etcd's initial-cluster-token.
	ClusterToken string `json:"ClusterToken,omitempty"`
	// ClientURLs are the cluster's client URLs.
	ClientURLs []string `json:"ClientURLs"`
}
