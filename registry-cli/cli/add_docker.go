package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/moby/moby/client"

	"github.com/physarum-p2p/physarum/registry-cli/imagebuild"
)

// proxyPackage is built into images when no -custom-proxy is given and no
// proxy binary sits beside registry-cli.
const proxyPackage = "github.com/physarum-p2p/physarum/proxy"

// buildImage builds (or, with -use-existing-image, looks up) the image of
// a DockerConf service and returns its ID, and whether DockerConf asks for
// the proxy's client mode.
func (s *session) buildImage(ctx context.Context, conf *serviceConfig, image string) (string, bool, error) {
	dc, err := imagebuild.ParseDockerConf(conf.DockerConf)
	if err != nil {
		return "", false, fmt.Errorf("DockerConf: %w", err)
	}
	dc.ProxyCmd = s.add.proxyCmd
	docker, err := client.New(client.FromEnv)
	if err != nil {
		return "", false, fmt.Errorf("docker client: %w", err)
	}
	defer docker.Close()
	if _, err := docker.Ping(ctx, client.PingOptions{}); err != nil {
		return "", false, fmt.Errorf("no Docker daemon answers (%w); a DockerConf service needs Docker, an Exec one does not", err)
	}
	if s.add.useExistingImage {
		res, err := docker.ImageInspect(ctx, image)
		if err != nil {
			return "", false, fmt.Errorf("image %s not found locally: %w", image, err)
		}
		return res.ID, dc.ProxyClientMode, nil
	}
	proxy, cleanup, err := s.proxyBinary(ctx)
	if err != nil {
		return "", false, err
	}
	defer cleanup()
	fmt.Fprintf(s.env.Stderr, "building image %s FROM %s with proxy %s\n", image, dc.From, proxy)
	id, err := imagebuild.Build(ctx, docker, imagebuild.Request{
		Conf: dc, Proxy: proxy, Dir: s.add.dir, Image: image, Progress: s.env.Stderr,
	})
	if err != nil {
		return "", false, err // says "build image <name>: ..." already
	}
	fmt.Fprintf(s.env.Stderr, "built %s (%s)\n", image, id)
	return id, dc.ProxyClientMode, nil
}

// proxyBinary finds the static proxy to put in the image: -custom-proxy,
// else a proxy beside this executable (make build puts both in bin/), else
// one built now from this module.
func (s *session) proxyBinary(ctx context.Context) (string, func(), error) {
	none := func() {}
	if p := s.add.customProxy; p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", none, fmt.Errorf("-custom-proxy: %w", err)
		}
		return p, none, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "proxy")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, none, nil
		}
	}
	dir, err := os.MkdirTemp("", "physarum-proxy-")
	if err != nil {
		return "", none, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	out := filepath.Join(dir, "proxy")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, proxyPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = s.env.Stderr
	if err := cmd.Run(); err != nil {
		cleanup()
		if errors.Is(err, exec.ErrNotFound) {
			return "", none, errors.New("no proxy binary beside registry-cli and no Go toolchain to build one: give -custom-proxy")
		}
		return "", none, fmt.Errorf("build the proxy (%s): %w", proxyPackage, err)
	}
	return out, cleanup, nil
}
