package runtime

import "errors"

// Errors every runtime returns, wrapped; check them with errors.Is.
var (
	// ErrNotFound means the runtime has no instance with that ID.
	ErrNotFound = errors.New("instance not found")
	// ErrExists means Start was given the ID of an instance that exists.
	ErrExists = errors.New("instance already exists")
	// ErrInvalidSpec means Start was given a spec the runtime cannot run.
	ErrInvalidSpec = errors.New("invalid instance spec")
	// ErrClosed means the runtime was closed.
	ErrClosed = errors.New("runtime closed")
)
