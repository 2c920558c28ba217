// Package registry is the client library of the Physarum registry, and the
// home of the records it stores (ServiceInfo, Instance, Node).
//
// Each operation comes in two variants, as in PhysarumSM: AddService,
// GetService, ListServices and DeleteService start a short-lived p2p node
// from bootstrap addresses and a PSK; the ...WithHostRouting variants use a
// node the caller already runs. Long-lived programs use a Client, which
// finds registries through the DHT, tries the nearest first and fails over
// to the next.
package registry
