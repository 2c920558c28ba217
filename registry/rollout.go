package registry

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Rollouts (SPEC.md section 12, "Updates"): an update registers a new
// version of a service's definition and replaces its pinned instances by
// instances of that version, by a strategy.
//
//   - rolling: start-first, at most max_parallel new instances starting at
//     once, an old instance stopped for each new one that stayed healthy
//     for min_healthy_time, and on failure (a new instance that fails or is
//     not healthy within healthy_deadline, or no progress within
//     progress_deadline) a revert to the definition the rollout started
//     from. Old and new serve side by side meanwhile.
//   - blue-green: the whole new set starts beside the old one, which alone
//     serves; once every new instance has been healthy for
//     min_healthy_time, every proxy switches to the new set at once (the
//     rollout's Route); the old set stays, idle, for rollback_window (or
//     until a promote), then stops. A rollback switches back while it
//     runs. A failure before the switch always reverts: traffic never
//     moved.
//
// Either way a revert (or rollback) registers the definition rolled from
// again as the next version: version numbers never go back.

// Rollout strategies.
const (
	StrategyRolling   = "rolling"
	StrategyBlueGreen = "blue-green"
)

// Rollout states.
const (
	RolloutRunning    = "running"
	RolloutSucceeded  = "succeeded"
	RolloutFailed     = "failed" // and not reverted (auto_revert off)
	RolloutReverted   = "reverted"
	RolloutRolledBack = "rolled-back" // by an operator; a revert rollout follows
)

// Defaults of a rolling update.
const (
	DefaultMaxParallel      = 1
	DefaultMinHealthyTime   = 5 * time.Second
	DefaultHealthyDeadline  = time.Minute
	DefaultProgressDeadline = 5 * time.Minute
	DefaultRollbackWindow   = 10 * time.Minute
)

// Strategy is how an update rolls out (the "strategy" object of PUT
// /service/<name>, registry-cli update's flags).
type Strategy struct {
	// Type is StrategyRolling or StrategyBlueGreen ("" means rolling).
	Type string `json:"type,omitempty"`
	// MaxParallel is how many new instances may be starting at once.
	MaxParallel int `json:"max_parallel,omitempty"`
	// MinHealthyTime is how long a new instance must run before an old
	// one is stopped for it.
	MinHealthyTime Duration `json:"min_healthy_time,omitzero"`
	// HealthyDeadline bounds the time a new instance may take to run.
	HealthyDeadline Duration `json:"healthy_deadline,omitzero"`
	// ProgressDeadline bounds the time without progress (a new instance
	// healthy, an old one stopped) before the rollout fails.
	ProgressDeadline Duration `json:"progress_deadline,omitzero"`
	// AutoRevert, unless false, rolls back to the previous definition
	// when the rollout fails. A blue-green rollout that fails before its
	// switch always reverts.
	AutoRevert *bool `json:"auto_revert,omitempty"`
	// RollbackWindow is how long a blue-green rollout keeps the old set
	// after the switch, for a rollback (blue-green only).
	RollbackWindow Duration `json:"rollback_window,omitzero"`
}

// WithDefaults fills in what s leaves out.
func (s Strategy) WithDefaults() Strategy {
	if s.Type == "" {
		s.Type = StrategyRolling
	}
	if s.MaxParallel == 0 {
		s.MaxParallel = DefaultMaxParallel
	}
	if s.MinHealthyTime == 0 {
		s.MinHealthyTime = Duration(DefaultMinHealthyTime)
	}
	if s.HealthyDeadline == 0 {
		s.HealthyDeadline = Duration(DefaultHealthyDeadline)
	}
	if s.ProgressDeadline == 0 {
		s.ProgressDeadline = Duration(DefaultProgressDeadline)
	}
	if s.AutoRevert == nil {
		on := true
		s.AutoRevert = &on
	}
	if s.RollbackWindow == 0 && s.Type == StrategyBlueGreen {
		s.RollbackWindow = Duration(DefaultRollbackWindow)
	}
	return s
}

// Validate checks a strategy; failures wrap ErrInvalid and name the field.
func (s Strategy) Validate() error {
	switch s.Type {
	case "", StrategyRolling, StrategyBlueGreen:
	default:
		return invalid("strategy.type", "%.40q: want %q or %q", s.Type, StrategyRolling, StrategyBlueGreen)
	}
	if s.RollbackWindow != 0 && s.Type != StrategyBlueGreen {
		return invalid("strategy.rollback_window", "applies to %q rollouts only", StrategyBlueGreen)
	}
	if s.MaxParallel < 0 || s.MaxParallel > 100 {
		return invalid("strategy.max_parallel", "%d: want 1 to 100", s.MaxParallel)
	}
	for _, d := range []struct {
		field string
		d     Duration
	}{
		{"strategy.min_healthy_time", s.MinHealthyTime},
		{"strategy.healthy_deadline", s.HealthyDeadline},
		{"strategy.progress_deadline", s.ProgressDeadline},
		{"strategy.rollback_window", s.RollbackWindow},
	} {
		if d.d < 0 || time.Duration(d.d) > 24*time.Hour {
			return invalid(d.field, "%s: want a positive duration of at most 24h", d.d)
		}
	}
	return nil
}

// Rollout is one update of a service, as status, events and registry-cli
// rollouts show it. The registry keeps the last one per service.
type Rollout struct {
	Service  string   `json:"service"`
	Strategy Strategy `json:"strategy"`
	// From and To are the versions rolled from and to; Equivalent lists
	// versions whose definitions are the same as To's (a revert's target
	// is the old definition again, under a new number): their instances
	// count as new.
	From       int   `json:"from_version"`
	To         int   `json:"to_version"`
	Equivalent []int `json:"equivalent_versions,omitempty"`
	// Previous is the definition rolled from, kept for a revert (the
	// version history may have dropped it).
	Previous ServiceInfo `json:"previous"`
	State    string      `json:"state"`
	// Message says what happens now, or why it failed.
	Message string `json:"message,omitempty"`
	// RevertOf is set on the rollout that reverts a failed (or rolled
	// back) one.
	RevertOf int `json:"revert_of,omitempty"`
	// Switched is when a blue-green rollout moved traffic to the new set
	// (a revert of one switches at its start); zero before.
	Switched time.Time `json:"switched,omitzero"`
	// Promoted ends a blue-green rollout's rollback window early.
	Promoted bool      `json:"promoted,omitempty"`
	SetBy    string    `json:"set_by,omitempty"`
	Started  time.Time `json:"started"`
	Progress time.Time `json:"progress"`
	Finished time.Time `json:"finished,omitzero"`
}

// Targets reports whether an instance of version v is of the rollout's
// target definition.
func (r Rollout) Targets(v int) bool {
	if v == r.To {
		return true
	}
	for _, e := range r.Equivalent {
		if e == v {
			return true
		}
	}
	return false
}

// BlueGreen reports whether the rollout goes by the blue-green strategy.
func (r Rollout) BlueGreen() bool { return r.Strategy.Type == StrategyBlueGreen }

// Route is which versions of a service the proxies send requests to, and
// which definition they start on-demand instances from. A blue-green
// rollout has one (Rollout.Route); without one every version serves and
// on-demand instances start from the current definition.
type Route struct {
	Service string `json:"service"`
	// Version and Equivalent are the rollout's target (Rollout.Targets):
	// once Switched, the target and any later version serve; before, only
	// earlier versions do. Version 0: no route, every version serves.
	Version    int   `json:"version,omitempty"`
	Equivalent []int `json:"equivalent_versions,omitempty"`
	Switched   bool  `json:"switched,omitempty"`
	// Start, when set, is the definition on-demand instances start from
	// (the old set's, before the switch).
	Start *ServiceInfo `json:"start,omitempty"`
}

// Serves reports whether an instance of version v takes requests. An
// instance of no known version (0: started before versions, or a proxy
// run by hand) always does.
func (r Route) Serves(v int) bool {
	if r.Version == 0 || v == 0 {
		return true
	}
	target := v >= r.Version || slices.Contains(r.Equivalent, v)
	return target == r.Switched
}

// Route is the routing this rollout asks of the proxies: none for a
// rolling one (old and new serve side by side); for a blue-green one the
// old set while it runs before the switch, and the new set (and later
// versions) from the switch on, for good, as once it succeeded or was
// reverted (with nothing to switch, a count of 0, it succeeds unswitched).
// One that failed or was rolled back routes to the old set again: its
// revert, written next, does too. A revert that failed has none.
func (r Rollout) Route() Route {
	rt := Route{Service: r.Service, Version: r.To, Equivalent: r.Equivalent}
	ended := r.State == RolloutFailed || r.State == RolloutRolledBack
	switch {
	case !r.BlueGreen():
		return Route{Service: r.Service}
	case r.State == RolloutRunning && r.Switched.IsZero(), ended && r.RevertOf == 0:
		old := r.Previous
		old.Version = r.From
		rt.Start = &old
	case r.State == RolloutRunning || r.State == RolloutSucceeded || r.State == RolloutReverted:
		rt.Switched = true
	default:
		return Route{Service: r.Service}
	}
	return rt
}

// Rollout operations of the registry protocol.
const (
	OpUpdate      = "service.update"
	OpRolloutList = "rollout.list"
	OpPromote     = "rollout.promote"
	OpRollback    = "rollout.rollback"
)

// Updaters roll services out to new definitions.
type Updaters interface {
	// Update registers info as the next version of service and rolls its
	// pinned instances over to it by strategy. An update while a rollout
	// of the service runs is refused with a conflict.
	Update(ctx context.Context, service string, info ServiceInfo, s Strategy) (Rollout, error)
	// Rollouts lists the last rollout of each service ("" for all).
	Rollouts(ctx context.Context, service string) ([]Rollout, error)
	// Promote ends the rollback window of service's blue-green rollout
	// now: the old set stops. Refused (conflict) before the switch and
	// when no blue-green rollout runs.
	Promote(ctx context.Context, service string) (Rollout, error)
	// Rollback ends service's running rollout and goes back to the
	// definition it rolled from (a blue-green one switches every proxy
	// back to the old set at once); it returns the revert rollout.
	// Refused (conflict) when no rollout runs.
	Rollback(ctx context.Context, service string) (Rollout, error)
}

var _ Updaters = (*Client)(nil)

// Update rolls a service out through the registry protocol.
func (c *Client) Update(ctx context.Context, service string, info ServiceInfo, s Strategy) (Rollout, error) {
	resp, err := c.call(ctx, Request{Op: OpUpdate, Name: service, Info: &info, Strategy: &s})
	if err != nil {
		return Rollout{}, fmt.Errorf("update %s: %w", service, err)
	}
	if len(resp.Rollouts) != 1 {
		return Rollout{}, fmt.Errorf("update %s: %d answers", service, len(resp.Rollouts))
	}
	return resp.Rollouts[0], nil
}

// Rollouts lists rollouts through the registry protocol.
func (c *Client) Rollouts(ctx context.Context, service string) ([]Rollout, error) {
	resp, err := c.call(ctx, Request{Op: OpRolloutList, Name: service})
	if err != nil {
		return nil, fmt.Errorf("rollouts: %w", err)
	}
	return resp.Rollouts, nil
}

// Promote ends a blue-green rollback window through the registry protocol.
func (c *Client) Promote(ctx context.Context, service string) (Rollout, error) {
	return c.rolloutOp(ctx, OpPromote, service)
}

// Rollback rolls a service back through the registry protocol.
func (c *Client) Rollback(ctx context.Context, service string) (Rollout, error) {
	return c.rolloutOp(ctx, OpRollback, service)
}

func (c *Client) rolloutOp(ctx context.Context, op, service string) (Rollout, error) {
	resp, err := c.call(ctx, Request{Op: op, Name: service})
	if err != nil {
		return Rollout{}, fmt.Errorf("%s %s: %w", op, service, err)
	}
	if len(resp.Rollouts) != 1 {
		return Rollout{}, fmt.Errorf("%s %s: %d answers", op, service, len(resp.Rollouts))
	}
	return resp.Rollouts[0], nil
}
