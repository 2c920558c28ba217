package imagebuild

import "errors"

var (
	// ErrInvalid wraps every refusal of a DockerConf or a build Request;
	// the message names the field.
	ErrInvalid = errors.New("invalid")

	// ErrCommandSyntax wraps SplitCommand's refusals: unbalanced quotes, a
	// trailing backslash, a NUL byte.
	ErrCommandSyntax = errors.New("bad command")

	// ErrBaseImageNotFound means DockerConf.From names an image that is not
	// present on the Docker host. Build never pulls: no registry is
	// reachable in a private network. The error is a *BaseImageError.
	ErrBaseImageNotFound = errors.New("base image not found locally")

	// ErrBuild wraps a failure the Docker daemon reported in the build's
	// output (a failed RUN, a COPY that does not apply, ...).
	ErrBuild = errors.New("docker build failed")
)

// BaseImageError says which base image is missing and what to do instead.
// It matches ErrBaseImageNotFound with errors.Is.
type BaseImageError struct {
	Image string
}

func (e *BaseImageError) Error() string {
	return "base image " + e.Image + " not found locally (no registry is reachable); use FROM scratch with a static binary"
}

// Is makes errors.Is(err, ErrBaseImageNotFound) hold.
func (e *BaseImageError) Is(target error) bool { return target == ErrBaseImageNotFound }
