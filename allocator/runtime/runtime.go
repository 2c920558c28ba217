// Package runtime defines what the allocator needs from a way of running
// instances. The Docker runtime (runtime/docker) and the process runtime
// (runtime/process) implement it; allocator/runtimetest is the conformance
// suite both pass.
//
// A runtime runs one unit per instance: a container, or a process group.
// It knows nothing about services, proxies or the registry: the allocator
// composes the command (the proxy as entrypoint, the service as its child)
// and the environment, and the runtime runs it, keeps it running, and finds
// it again after the allocator restarts.
package runtime

import (
	"context"
	"fmt"
	"time"
)

// Labels set on everything a runtime creates, so that a restarted allocator
// can find its instances (Docker labels; the process runtime keeps them in
// the instance's state file).
const (
	LabelManaged  = "physarum.managed"  // "true"
	LabelInstance = "physarum.instance" // instance ID
	LabelService  = "physarum.service"  // service name
	LabelNode     = "physarum.node"     // allocator peer ID
)

// Spec is one instance to run.
type Spec struct {
	// ID is the instance ID: unique, [a-z0-9-], at most 63 characters. It
	// names the container or the process's state directory.
	ID string
	// Image is the Docker image reference (Docker runtime only).
	Image string
	// Command is the argv to run. The process runtime requires it, with an
	// absolute path first (the process gets no PATH); the Docker runtime
	// uses it as the container's Cmd when set (the image's entrypoint
	// stays).
	Command []string
	// Env is the instance's environment (the process runtime adds nothing
	// of the allocator's own environment).
	Env map[string]string
	// CPU is the CPU limit in millicores; 0 means none.
	CPU int
	// CPURequest is the CPU the instance is guaranteed when the node is
	// busy, in millicores (Docker CPU shares: 1000 millicores = 1024
	// shares); 0 means the runtime's default weight.
	CPURequest int
	// Memory is the memory limit in MiB; 0 means none.
	Memory int
	// Labels are attached to the instance and returned by List.
	Labels map[string]string
	// MaxRestarts bounds restarts after the instance exits with an error:
	// once exceeded, the instance stays down and Wait returns. A clean exit
	// (status 0) is not restarted.
	MaxRestarts int
}

// State is an instance's state as the runtime sees it.
type State string

const (
	StateRunning State = "running" // up (possibly restarted)
	StateExited  State = "exited"  // down for good: stopped, or restarts exhausted
	StateUnknown State = "unknown"
)

// Status describes one instance.
type Status struct {
	ID    string
	State State
	// Labels are Spec.Labels plus the runtime's own (LabelManaged,
	// LabelInstance, and LabelNode for Docker).
	Labels map[string]string
	// StartedAt is when the current (or last) run started.
	StartedAt time.Time
	// Restarts counts restarts after crashes so far.
	Restarts int
	// ExitCode is the last exit status (meaningful once exited, or after a
	// restart): 128+n after signal n, as shells and Docker report it, and
	// -1 when unknown (the process runtime cannot learn the status of a
	// process it adopted rather than started).
	ExitCode int
	// Ref is the runtime's own handle: container ID, or "pid N".
	Ref string
}

// Validate checks what every runtime requires of a spec: a well-formed ID
// and no negative limits. Each runtime adds its own checks (a command, an
// image). Failures wrap ErrInvalidSpec.
func (s Spec) Validate() error {
	if !validID(s.ID) {
		return fmt.Errorf("instance id %q: want 1 to 63 characters of [a-z0-9-]: %w", s.ID, ErrInvalidSpec)
	}
	if s.CPU < 0 || s.Memory < 0 || s.MaxRestarts < 0 {
		return fmt.Errorf("instance %s: cpu, memory and max restarts must not be negative: %w", s.ID, ErrInvalidSpec)
	}
	return nil
}

func validID(id string) bool {
	if id == "" || len(id) > 63 {
		return false
	}
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Runtime runs instances. Methods are safe for concurrent use, and each
// returns when its ctx ends. After Close, every method but Name and Close
// returns ErrClosed, and calls blocked in Wait or Stop return it too.
type Runtime interface {
	// Name is "docker" or "process".
	Name() string
	// Start creates and starts the instance and returns once it has been
	// started (not once it is healthy: the allocator checks health). It
	// fails with ErrExists if an instance with that ID exists, running or
	// not, and with ErrInvalidSpec if spec.Validate fails.
	Start(ctx context.Context, spec Spec) (Status, error)
	// Inspect returns the instance's current status, or ErrNotFound.
	Inspect(ctx context.Context, id string) (Status, error)
	// Wait blocks until the instance is down for good (State exited) and
	// returns its final status. Restarts within Spec.MaxRestarts do not
	// end a Wait.
	Wait(ctx context.Context, id string) (Status, error)
	// Stop stops the instance: SIGTERM, then SIGKILL after timeout, and
	// returns once it is down (State exited). It does not restart it, and
	// a restart already pending is cancelled. Stopping an exited instance
	// is not an error. The Docker runtime rounds timeout up to whole
	// seconds.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Remove deletes what Stop left (container, state directory), after
	// which the ID is free again. An instance still running is killed
	// first (SIGKILL, no grace period): call Stop before Remove for a clean
	// shutdown.
	Remove(ctx context.Context, id string) error
	// List returns every instance this runtime manages (those carrying
	// LabelManaged), running or not, including ones started before this
	// process: how a restarted allocator adopts its instances.
	List(ctx context.Context) ([]Status, error)
	// Close releases the runtime's resources and waits for its goroutines
	// to end. Instances keep running, and a new runtime on the same state
	// (Docker daemon and node, or state directory) adopts them. Close is
	// idempotent.
	Close() error
}

// LogTailer is offered by runtimes that keep an instance's output: the
// allocator puts the last lines in a failed instance's record, so an
// operator sees why without logging in to the node.
type LogTailer interface {
	// Tail returns up to the last n lines the instance wrote to stderr
	// (and stdout, where the runtime cannot tell them apart).
	Tail(ctx context.Context, id string, n int) (string, error)
}
