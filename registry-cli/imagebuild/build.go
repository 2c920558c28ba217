// Package imagebuild builds the Docker image that `registry-cli add`
// registers: the service's files from a DockerConf, with this project's
// proxy as the entrypoint, which runs the service's command as its child.
//
// The Dockerfile is generated (see Dockerfile) and sent with an in-memory
// build context that holds only the Dockerfile, the proxy and the Copy
// sources. Nothing is ever pulled: the base image must be "scratch" or
// present on the Docker host, because a private network has no registry to
// pull from.
//
// Typical use:
//
//	conf, err := imagebuild.ParseDockerConf(data)
//	cli, err := client.New(client.FromEnv)
//	id, err := imagebuild.Build(ctx, cli, imagebuild.Request{
//		Conf: conf, Proxy: "bin/proxy", Dir: ".", Image: "shop/cart:1.0", Progress: os.Stderr,
//	})
package imagebuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// Docker is what Build needs from the Docker Engine API; *client.Client
// implements it.
type Docker interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options client.ImageBuildOptions) (client.ImageBuildResult, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
}

var _ Docker = (*client.Client)(nil)

// Request is one image to build.
type Request struct {
	// Conf says what goes into the image.
	Conf DockerConf
	// Proxy is the path of the proxy binary put in the image as
	// /app/proxy: a Linux executable, static for a FROM scratch image.
	Proxy string
	// Dir is the directory Copy sources are relative to (-dir); "" means
	// the current directory.
	Dir string
	// Image is the name the image is tagged with (name[:tag]).
	Image string
	// Progress receives the build's output as it arrives; nil discards
	// it. Write errors are ignored: progress is informational.
	Progress io.Writer
}

// Build validates req, checks that a non-scratch base image is present
// locally, builds the image with the daemon's classic builder, and returns
// its ID ("sha256:..."). Failures the daemon reports in the build output
// wrap ErrBuild; a missing base image is a *BaseImageError.
func Build(ctx context.Context, docker Docker, req Request) (string, error) {
	if err := validateRequest(req); err != nil {
		return "", err
	}
	dockerfile, err := Dockerfile(req.Conf)
	if err != nil {
		return "", err
	}
	if !req.Conf.isScratch() {
		if _, err := docker.ImageInspect(ctx, req.Conf.From); err != nil {
			if cerrdefs.IsNotFound(err) {
				return "", &BaseImageError{Image: req.Conf.From}
			}
			return "", fmt.Errorf("inspect base image %s: %w", req.Conf.From, err)
		}
	}
	dir := req.Dir
	if dir == "" {
		dir = "."
	}
	tarball, err := buildContext(req.Conf, dockerfile, req.Proxy, dir)
	if err != nil {
		return "", err
	}
	res, err := docker.ImageBuild(ctx, tarball, client.ImageBuildOptions{
		Tags:        []string{req.Image},
		Dockerfile:  dockerfileName,
		Remove:      true,
		ForceRemove: true,
		PullParent:  false,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", req.Image, err)
	}
	defer res.Body.Close()
	id, err := readBuildOutput(res.Body, req.Progress)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", req.Image, err)
	}
	if id == "" {
		// The daemon did not report the ID (older daemons): ask for it.
		img, err := docker.ImageInspect(ctx, req.Image)
		if err != nil {
			return "", fmt.Errorf("inspect built image %s: %w", req.Image, err)
		}
		id = img.ID
	}
	return id, nil
}

func validateRequest(req Request) error {
	switch {
	case req.Image == "":
		return fmt.Errorf("%w image name: missing", ErrInvalid)
	case strings.IndexFunc(req.Image, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%w image name %q: contains whitespace", ErrInvalid, req.Image)
	case req.Proxy == "":
		return fmt.Errorf("%w proxy binary: no path given", ErrInvalid)
	}
	return nil
}

// buildMessage is one JSON message of the build output stream.
type buildMessage struct {
	Stream      string            `json:"stream"`
	Status      string            `json:"status"`
	ID          string            `json:"id"`
	Progress    string            `json:"progress"`
	ErrorDetail *jsonstream.Error `json:"errorDetail"`
	Error       string            `json:"error"` // older daemons: the same text as errorDetail
	Aux         json.RawMessage   `json:"aux"`
}

// readBuildOutput copies the build's messages to progress, and returns the
// image ID the daemon reports (empty when it reports none) or the error it
// reports.
func readBuildOutput(body io.Reader, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	var id string
	dec := json.NewDecoder(body)
	for {
		var m buildMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return id, nil
		} else if err != nil {
			return "", fmt.Errorf("read build output: %w", err)
		}
		if m.ErrorDetail != nil || m.Error != "" {
			msg := m.Error
			if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
				msg = m.ErrorDetail.Message
			}
			return "", fmt.Errorf("%w: %s", ErrBuild, strings.TrimSpace(msg))
		}
		switch {
		case m.Stream != "":
			_, _ = io.WriteString(progress, m.Stream)
		case m.Status != "":
			line := m.Status
			if m.ID != "" {
				line = m.ID + ": " + line
			}
			if m.Progress != "" {
				line += " " + m.Progress
			}
			_, _ = io.WriteString(progress, line+"\n")
		}
		if len(m.Aux) > 0 {
			var aux struct {
				ID string `json:"ID"`
			}
			if json.Unmarshal(m.Aux, &aux) == nil && strings.HasPrefix(aux.ID, "sha256:") {
				id = aux.ID
			}
		}
	}
}
