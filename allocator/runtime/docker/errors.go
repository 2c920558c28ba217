package docker

import "errors"

// Errors of the Docker runtime, wrapped; check them with errors.Is.
var (
	// ErrUnavailable means no Docker daemon answered: the allocator falls
	// back to the process runtime.
	ErrUnavailable = errors.New("docker daemon unavailable")
	// ErrImageNotFound means the instance's image is not on this node. The
	// runtime never pulls: images are built with registry-cli add.
	ErrImageNotFound = errors.New("image not found locally")
)
