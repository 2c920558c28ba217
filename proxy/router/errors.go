package router

import "errors"

// Errors Pick returns; the proxy maps them to HTTP statuses.
var (
	// ErrUnknownService: no such service in the registry (404).
	ErrUnknownService = errors.New("unknown service")
	// ErrAllocation: no instance within reach and none could be started
	// (503, with the reason).
	ErrAllocation = errors.New("no instance available")
	// ErrRegistry: the registry could not be asked, and nothing is known
	// of the service (503: the registry is down, not the service).
	ErrRegistry = errors.New("registry unavailable")
	// ErrNotServing: the service runs its proxy in client mode: it calls
	// other services and answers none (404).
	ErrNotServing = errors.New("serves no requests")
	// ErrClosed: the router was closed; it takes no more requests (503).
	ErrClosed = errors.New("router closed")
)
