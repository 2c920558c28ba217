package registry

import (
	"context"
	"fmt"
	"time"
)

// Versions of a service's definition (SPEC.md section 12, "Updates").
// The registry numbers a service's definitions: the first registration is
// version 1, and each registration of a definition that differs from the
// current one (Version aside) is the next version; registering the current
// definition again changes nothing. It keeps the last ServiceVersionsKept
// versions, the current one included, with who registered each and when;
// deleting the service deletes them. Instances carry the version they were
// started from (Instance.Version).

// ServiceVersionsKept is how many versions of a service's definition the
// registry keeps, the current one included: registering version 11
// forgets version 1.
const ServiceVersionsKept = 10

// OpServiceHistory reads a service's versions: Request.Name names the
// service, Response.Versions answers, newest first.
const OpServiceHistory = "service.history"

// ServiceVersion is one version of a service's definition as the registry
// keeps it.
type ServiceVersion struct {
	Version int `json:"version"`
	// Info is the definition, its Version set.
	Info ServiceInfo `json:"info"`
	// SetBy and SetAt say who registered it, and when (empty for a
	// definition registered before the registry kept versions).
	SetBy string    `json:"set_by,omitempty"`
	SetAt time.Time `json:"set_at,omitzero"`
}

// VersionHistory reads the versions of services' definitions; one
// implementation (registry-service's Control) behind every door.
type VersionHistory interface {
	// History lists the versions of service's definition the registry
	// keeps, newest (the current one) first: not_found when there is no
	// such service.
	History(ctx context.Context, service string) ([]ServiceVersion, error)
}

var _ VersionHistory = (*Client)(nil)

// History reads a service's versions through the registry protocol,
// newest first.
func (c *Client) History(ctx context.Context, service string) ([]ServiceVersion, error) {
	if err := ValidateName(service); err != nil {
		return nil, err
	}
	resp, err := c.call(ctx, Request{Op: OpServiceHistory, Name: service})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", service, err)
	}
	if len(resp.Versions) == 0 {
		return nil, fmt.Errorf("history of %s: empty answer", service)
	}
	return resp.Versions, nil
}
