// Package events is the control plane's event stream (SPEC.md section
// 12, "Events"): every change of services, desired counts, computes,
// nodes, instances and launched instances, read from etcd's own log. An
// event's index is the etcd revision of the change; resuming is a watch
// from that revision on; an index etcd has compacted away is answered
// with the oldest index still kept (*registry.GoneError), never hidden.
//
// FromWatch maps one etcd watch response to registry events (the
// callbacks' delivery worker reads etcd with it too); Streamer.Stream
// serves a reader, behind every door: registry-service's libp2p
// protocol (registry.EventsProtocol) and the HTTP API's /v1/events.
package events
