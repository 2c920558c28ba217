package registry

import (
	"context"
	"fmt"
	"time"
)

// Rollouts (SPEC.md section 12, "Updates"): an update registers a new
// version of a service's definition and replaces its pinned instances by
// instances of that version, by a strategy. This version implements the
// rolling strategy: start-first, at most max_parallel new instances
// starting at once, an old instance stopped for each new one that stayed
// healthy for min_healthy_time, and on failure (a new instance that fails
// or is not healthy within healthy_deadline, or no progress within
// progress_deadline) a revert to the definition the rollout started from.

// Rollout strategies.
const (
	StrategyRolling = "rolling"
)

// Rollout states.
const (
	RolloutRunning   = "running"
	RolloutSucceeded = "succeeded"
	RolloutFailed    = "failed" // and not reverted (auto_revert off)
	RolloutReverted  = "reverted"
)

// Defaults of a rolling update.
const (
	DefaultMaxParallel      = 1
	DefaultMinHealthyTime   = 5 * time.Second
	DefaultHealthyDeadline  = time.Minute
	DefaultProgressDeadline = 5 * time.Minute
)

// Strategy is how an update rolls out (the "strategy" object of PUT
// /service/<name>, registry-cli update's flags).
type Strategy struct {
	// Type is StrategyRolling ("" means rolling).
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
	// when the rollout fails.
	AutoRevert *bool `json:"auto_revert,omitempty"`
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
	return s
}

// Validate checks a strategy; failures wrap ErrInvalid and name the field.
func (s Strategy) Validate() error {
	switch s.Type {
	case "", StrategyRolling:
	default:
		return invalid("strategy.type", "%.40q: want %q (blue-green is not built yet)", s.Type, StrategyRolling)
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
	// RevertOf is set on the rollout that reverts a failed one.
	RevertOf int       `json:"revert_of,omitempty"`
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

// Rollout operations of the registry protocol.
const (
	OpUpdate      = "service.update"
	OpRolloutList = "rollout.list"
)

// Updaters roll services out to new definitions.
type Updaters interface {
	// Update registers info as the next version of service and rolls its
	// pinned instances over to it by strategy. An update while a rollout
	// of the service runs is refused with a conflict.
	Update(ctx context.Context, service string, info ServiceInfo, s Strategy) (Rollout, error)
	// Rollouts lists the last rollout of each service ("" for all).
	Rollouts(ctx context.Context, service string) ([]Rollout, error)
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
