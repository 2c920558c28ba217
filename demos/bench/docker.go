package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	docker "github.com/moby/moby/client"

	"github.com/physarum-p2p/physarum/common/freeport"
)

// benchImage is the image the suite builds (FROM scratch, with hello and
// this project's proxy) and removes at the end.
const benchImage = "physarum-bench/hello:latest"

// labelRun marks containers the suite starts itself (the direct
// baseline), so that the final sweep finds them.
const labelRun = "physarum-bench.run"

// dockerCheck says whether a Docker daemon answers, and its version.
func dockerCheck(ctx context.Context) (string, error) {
	cli, err := docker.New(docker.FromEnv)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, docker.PingOptions{}); err != nil {
		return "", err
	}
	v, err := cli.ServerVersion(ctx, docker.ServerVersionOptions{})
	if err != nil {
		return "", err
	}
	return v.Version, nil
}

// dockerSweep removes the containers of the given allocators (by their
// node label) and those the suite started itself for run, and the image
// when asked. It returns how many containers it removed.
func dockerSweep(nodes []string, run string, image string) (int, error) {
	cli, err := docker.New(docker.FromEnv)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ids []string
	for _, f := range append([]string{labelRun + "=" + run}, prefixAll("physarum.node=", nodes)...) {
		res, err := cli.ContainerList(ctx, docker.ContainerListOptions{All: true, Filters: docker.Filters{}.Add("label", f)})
		if err != nil {
			return 0, err
		}
		for _, c := range res.Items {
			ids = append(ids, c.ID)
		}
	}
	n := 0
	for _, id := range ids {
		if _, err := cli.ContainerRemove(ctx, id, docker.ContainerRemoveOptions{Force: true}); err == nil {
			n++
		}
	}
	if image != "" {
		if _, err := cli.ImageRemove(ctx, image, docker.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			return n, fmt.Errorf("remove image %s: %w", image, err)
		}
	}
	return n, nil
}

func prefixAll(prefix string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = prefix + s
	}
	return out
}

// directContainer is the Docker baseline of a deploy: create and start a
// container of the same image running hello alone (no proxy, no
// allocator) on the host network, and wait until it answers /healthz. It
// returns the time that took; the container is removed afterwards.
func directContainer(ctx context.Context, run string) (time.Duration, error) {
	cli, err := docker.New(docker.FromEnv)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	port := freeport.One("127.0.0.1")
	start := time.Now()
	res, err := cli.ContainerCreate(ctx, docker.ContainerCreateOptions{
		Config: &container.Config{
			Image:      benchImage,
			Entrypoint: []string{"/app/hello"},
			Env:        []string{"SERVICE_PORT=" + strconv.Itoa(port)},
			Labels:     map[string]string{labelRun: run},
		},
		HostConfig: &container.HostConfig{NetworkMode: "host"},
	})
	if err != nil {
		return 0, fmt.Errorf("create container: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = cli.ContainerRemove(rctx, res.ID, docker.ContainerRemoveOptions{Force: true})
	}()
	if _, err := cli.ContainerStart(ctx, res.ID, docker.ContainerStartOptions{}); err != nil {
		return 0, fmt.Errorf("start container: %w", err)
	}
	if err := waitHealthy(ctx, port, 30*time.Second); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// healthClient polls /healthz; no keep-alive, as a fresh process has no
// connection to keep.
var healthClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// waitHealthy polls http://127.0.0.1:port/healthz every millisecond
// until it answers 200.
func waitHealthy(ctx context.Context, port int, timeout time.Duration) error {
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if code, _, err := get(ctx, healthClient, url); err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return fmt.Errorf("nothing answered on port %d within %s", port, timeout)
}
