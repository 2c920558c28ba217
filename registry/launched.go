package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// The instance lifecycle on the registry protocol (seed 003, SPEC.md
// section 12): Request.Launch holds a launch, Request.UUID names a
// launched instance, Request.Action says what to do to it and Request.Name
// filters launched.list by service; Response.Launched answers.
const (
	OpLaunch         = "launch"
	OpLaunchedGet    = "launched.get"
	OpLaunchedList   = "launched.list"
	OpLaunchedAct    = "launched.act"
	OpLaunchedForget = "launched.forget"
)

// ValidateLaunch checks what a caller gives to launch an instance, as
// every door does before it writes anything: the service's name, the UUID
// when given (lower-cased here), the compute's name when given, and the
// callback's URL when given.
func ValidateLaunch(r *LaunchRequest) error {
	if r.Service == "" {
		return invalid("service", "missing: name the service to launch an instance of")
	}
	if err := ValidateName(r.Service); err != nil {
		return err
	}
	if r.UUID != "" {
		u, err := NormalizeUUID(r.UUID)
		if err != nil {
			return err
		}
		r.UUID = u
	}
	if r.Compute != "" {
		if err := ValidateComputeName(r.Compute); err != nil {
			return err
		}
	}
	if r.Callback != "" {
		if err := ValidateCallbackURL(r.Callback); err != nil {
			// The field is callback here, not url.
			return invalid("callback", "%s", strings.TrimPrefix(err.Error(), "invalid url: "))
		}
	}
	return nil
}

// ValidateAction checks an action on a launched instance; the error lists
// the valid ones, as seed 003 asks.
func ValidateAction(action string) error {
	if slices.Contains(Actions, action) {
		return nil
	}
	if action == "" {
		return invalid("action", "missing: want %s", strings.Join(Actions, ", "))
	}
	return invalid("action", "%.40q: want %s", action, strings.Join(Actions, ", "))
}

// Launch launches one pinned instance of a service and returns it, pending
// (the registry's reconciler places and starts it).
func (c *Client) Launch(ctx context.Context, r LaunchRequest) (LaunchedInstance, error) {
	if err := ValidateLaunch(&r); err != nil {
		return LaunchedInstance{}, err
	}
	resp, err := c.call(ctx, Request{Op: OpLaunch, Launch: &r})
	if err != nil {
		return LaunchedInstance{}, fmt.Errorf("launch %s: %w", r.Service, err)
	}
	return oneLaunched(resp, "launch "+r.Service)
}

// GetLaunched reads a launched instance: its state, node and addresses.
func (c *Client) GetLaunched(ctx context.Context, uuid string) (LaunchedInstance, error) {
	u, err := NormalizeUUID(uuid)
	if err != nil {
		return LaunchedInstance{}, err
	}
	resp, err := c.call(ctx, Request{Op: OpLaunchedGet, UUID: u})
	if err != nil {
		return LaunchedInstance{}, fmt.Errorf("get instance %s: %w", u, err)
	}
	return oneLaunched(resp, "get instance "+u)
}

// ListLaunched lists the launched instances of a service, or all ("").
func (c *Client) ListLaunched(ctx context.Context, service string) ([]LaunchedInstance, error) {
	if service != "" {
		if err := ValidateName(service); err != nil {
			return nil, err
		}
	}
	resp, err := c.call(ctx, Request{Op: OpLaunchedList, Name: service})
	if err != nil {
		return nil, fmt.Errorf("list launched instances: %w", err)
	}
	if resp.Launched == nil {
		resp.Launched = []LaunchedInstance{}
	}
	return resp.Launched, nil
}

// Act starts, stops or reboots a launched instance and returns it as the
// action left it.
func (c *Client) Act(ctx context.Context, uuid, action string) (LaunchedInstance, error) {
	if err := ValidateAction(action); err != nil {
		return LaunchedInstance{}, err
	}
	u, err := NormalizeUUID(uuid)
	if err != nil {
		return LaunchedInstance{}, err
	}
	resp, err := c.call(ctx, Request{Op: OpLaunchedAct, UUID: u, Action: action})
	if err != nil {
		return LaunchedInstance{}, fmt.Errorf("%s instance %s: %w", action, u, err)
	}
	return oneLaunched(resp, action+" instance "+u)
}

// Forget stops a launched instance and deletes its record (and the
// callback launched with it); it returns the registry's message.
func (c *Client) Forget(ctx context.Context, uuid string) (string, error) {
	u, err := NormalizeUUID(uuid)
	if err != nil {
		return "", err
	}
	resp, err := c.call(ctx, Request{Op: OpLaunchedForget, UUID: u})
	if err != nil {
		return "", fmt.Errorf("forget instance %s: %w", u, err)
	}
	return resp.Message, nil
}

// oneLaunched is the one launched instance an answer must hold.
func oneLaunched(resp *Response, what string) (LaunchedInstance, error) {
	if len(resp.Launched) != 1 {
		return LaunchedInstance{}, fmt.Errorf("%s: %d instances in the answer, want 1", what, len(resp.Launched))
	}
	return resp.Launched[0], nil
}

var _ Lifecycle = (*Client)(nil)
