// Package deploy is the protocol between whoever needs an instance (a
// proxy, registry-cli) and the allocators that run them, and the placer
// that picks which allocator to ask: filter and rank the nodes (see
// allocator/placement) by the RTT measured from the requester, then ask
// them in order until one admits the instance.
package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// Protocol carries one Request and its Response.
const Protocol protocol.ID = "/physarum/allocator/1.0.0"

// Rendezvous is the DHT namespace allocators advertise under.
const Rendezvous = "physarum/allocator"

// Operations.
const (
	OpDeploy = "deploy"
	OpStop   = "stop"
	OpList   = "list"
)

// Request asks an allocator to start (deploy) an instance of a registered
// service, stop one, or list its instances.
type Request struct {
	Op string `json:"Op"`
	// Service names a registered service (deploy).
	Service string `json:"Service,omitempty"`
	// OnDemand marks an instance started for a request: the allocator may
	// hand back an on-demand instance of the service it already runs or is
	// starting (so concurrent requesters do not start one each), and culls
	// it when idle. Explicit deployments (false) always start a new one and
	// are never culled.
	OnDemand bool `json:"OnDemand,omitempty"`
	// ID names an instance (stop). On deploy, the caller may choose the
	// new instance's ID (the reconciler does, to know its own in-flight
	// starts): a valid name not in use on the node, else the allocator
	// picks one.
	ID string `json:"ID,omitempty"`
	// Compute marks a pinned instance started for a desired count on
	// that compute (deploy; see registry.Instance.Compute).
	Compute string `json:"Compute,omitempty"`
	// Version, when set, is the version of the service's definition to
	// start (deploy): one the registry still keeps. 0 is the current
	// one. A rollout starts its target, and a blue-green one's old set
	// and on-demand instances start from the old version until the switch.
	Version int `json:"Version,omitempty"`
}

// Response answers a Request.
type Response struct {
	// Instance is the instance deployed (or reused), once running.
	Instance *registry.Instance `json:"Instance,omitempty"`
	// Reused says an existing on-demand instance was handed back.
	Reused bool `json:"Reused,omitempty"`
	// Instances lists the allocator's instances (list).
	Instances []registry.Instance `json:"Instances,omitempty"`
}

// DefaultTimeout bounds a deploy: starting an instance and waiting until
// it is healthy. An image that must be loaded can take a while.
const DefaultTimeout = 60 * time.Second

// Deploy asks allocator p to run an instance of service and waits until it
// is running. Refusals come back as *wire.Error with codes no_capacity,
// not_found (unknown service), unsupported (no runtime for it) or
// runtime_error.
func Deploy(ctx context.Context, h host.Host, p peer.ID, service string, onDemand bool) (*Response, error) {
	return Send(ctx, h, p, Request{Op: OpDeploy, Service: service, OnDemand: onDemand})
}

// Send sends a deploy Request (any of its fields) to allocator p and waits
// until the instance runs, as Deploy does.
func Send(ctx context.Context, h host.Host, p peer.ID, r Request) (*Response, error) {
	var resp Response
	if err := wire.Call(ctx, h, p, Protocol, r, &resp, wire.CallOptions{Timeout: DefaultTimeout}); err != nil {
		return nil, fmt.Errorf("deploy %s on %s: %w", r.Service, p.ShortString(), err)
	}
	if resp.Instance == nil {
		return nil, fmt.Errorf("deploy %s on %s: answer without an instance", r.Service, p.ShortString())
	}
	return &resp, nil
}

// Stop asks allocator p to stop instance id.
func Stop(ctx context.Context, h host.Host, p peer.ID, id string) error {
	if err := wire.Call(ctx, h, p, Protocol, Request{Op: OpStop, ID: id}, nil, wire.CallOptions{Timeout: 30 * time.Second}); err != nil {
		return fmt.Errorf("stop %s on %s: %w", id, p.ShortString(), err)
	}
	return nil
}

// List asks allocator p for its instances.
func List(ctx context.Context, h host.Host, p peer.ID) ([]registry.Instance, error) {
	var resp Response
	if err := wire.Call(ctx, h, p, Protocol, Request{Op: OpList}, &resp, wire.CallOptions{}); err != nil {
		return nil, fmt.Errorf("list instances on %s: %w", p.ShortString(), err)
	}
	return resp.Instances, nil
}
