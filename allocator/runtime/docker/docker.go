// Package docker is the runtime for nodes with a Docker daemon. Each
// instance is a container named physarum-<id>, on the host network (the
// allocator assigns the ports instances listen on, so there is no port
// mapping), with the CPU and memory limits of its spec and a restart
// policy under which Docker itself restarts crashes, with its own backoff,
// even while the allocator is down.
//
// Every container carries the labels physarum.managed=true,
// physarum.instance=<id> and physarum.node=<Options.Node>. Several
// allocators may share one daemon: each sees, inspects and stops only the
// containers labelled with its own node, and a restarted allocator finds
// its containers again through List.
//
// An instance whose image is not on the node is started after
// Options.Fetch brings the image (from the network's other nodes); without
// Fetch, or when it fails, the start fails with ErrImageNotFound and the
// reason.
//
// It talks to the daemon through the Engine API client
// (github.com/moby/moby/client), which negotiates the API version.
package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/physarum-p2p/physarum/allocator/runtime"
)

// Name is what Runtime.Name returns.
const Name = "docker"

// DefaultConnectTimeout is how long New waits for the daemon by default.
const DefaultConnectTimeout = 2 * time.Second

// containerPrefix starts the name of every container the runtime creates.
const containerPrefix = "physarum-"

// cleanupTimeout bounds the removal of a container that failed to start.
const cleanupTimeout = 10 * time.Second

// Options configure a Runtime.
type Options struct {
	// Node is the peer ID of the owning allocator, required. It labels
	// every container and selects those List returns.
	Node string
	// Host is the daemon's address (e.g. unix:///run/docker.sock or
	// tcp://10.0.0.2:2375). Default: $DOCKER_HOST, else the platform's
	// default socket. TLS settings come from $DOCKER_CERT_PATH and
	// $DOCKER_TLS_VERIFY.
	Host string
	// ConnectTimeout bounds how long New waits for the daemon to answer.
	// Default: DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Fetch, when set, brings an image the daemon lacks (see
	// allocator/images): Start calls it before it gives up on a missing
	// image. Its error says why the image could not be had.
	Fetch func(ctx context.Context, image string) error
	// Logger receives the runtime's logs. Default: discard.
	Logger *slog.Logger
}

// Runtime is the Docker runtime. Create it with New.
type Runtime struct {
	cli   *client.Client
	node  string
	fetch func(ctx context.Context, image string) error
	log   *slog.Logger

	// life ends at Close, cancelling calls in flight.
	life      context.Context
	endLife   context.CancelFunc
	closeOnce sync.Once
}

var (
	_ runtime.Runtime   = (*Runtime)(nil)
	_ runtime.LogTailer = (*Runtime)(nil)
)

// New connects to the daemon and checks, within Options.ConnectTimeout,
// that it answers. If it does not, New fails with an error wrapping
// ErrUnavailable, so that the allocator can fall back to the process
// runtime.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Node == "" {
		return nil, errors.New("docker runtime: no node ID")
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clientOpts := []client.Opt{client.FromEnv}
	if opts.Host != "" {
		clientOpts = append(clientOpts, client.WithHost(opts.Host))
	}
	cli, err := client.New(clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	ping, err := cli.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("ping docker daemon at %s: %w: %w", cli.DaemonHost(), ErrUnavailable, err)
	}
	r := &Runtime{
		cli:   cli,
		node:  opts.Node,
		fetch: opts.Fetch,
		log:   log.With("component", "runtime", "runtime", Name),
	}
	r.life, r.endLife = context.WithCancel(context.Background())
	r.log.Debug("connected to docker daemon", "host", cli.DaemonHost(), "api_version", ping.APIVersion)
	return r, nil
}

// Name returns "docker".
func (r *Runtime) Name() string { return Name }

// Ping checks that the daemon answers; the allocator stops offering the
// Docker runtime while it does not.
func (r *Runtime) Ping(ctx context.Context) error {
	ctx, done, err := r.call(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := r.cli.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("ping docker daemon at %s: %w: %w", r.cli.DaemonHost(), ErrUnavailable, err)
	}
	return nil
}

// call derives the context of one method call, which also ends at Close.
func (r *Runtime) call(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if r.life.Err() != nil {
		return nil, nil, runtime.ErrClosed
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(r.life, func() { cancel(runtime.ErrClosed) })
	return ctx, func() { stop(); cancel(nil) }, nil
}

// cause prefers the reason ctx ended (the caller's deadline, Close) to
// the API client's report of it.
func cause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

func containerName(id string) string { return containerPrefix + id }

// Start creates and starts the instance's container. It fails with
// ErrImageNotFound if Spec.Image is not on the node, and with
// runtime.ErrInvalidSpec if it is empty.
func (r *Runtime) Start(ctx context.Context, spec runtime.Spec) (runtime.Status, error) {
	if err := spec.Validate(); err != nil {
		return runtime.Status{}, fmt.Errorf("start: %w", err)
	}
	if spec.Image == "" {
		return runtime.Status{}, fmt.Errorf("start %s: no image: %w", spec.ID, runtime.ErrInvalidSpec)
	}
	ctx, done, err := r.call(ctx)
	if err != nil {
		return runtime.Status{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	defer done()
	log := r.log.With("instance_id", spec.ID)

	if err := r.ensureImage(ctx, spec); err != nil {
		return runtime.Status{}, err
	}
	created, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       containerName(spec.ID),
		Config:     r.config(spec),
		HostConfig: hostConfig(spec),
	})
	switch {
	case cerrdefs.IsConflict(err):
		return runtime.Status{}, fmt.Errorf("start %s: container %s: %w", spec.ID, containerName(spec.ID), runtime.ErrExists)
	case cerrdefs.IsNotFound(err): // the image went away since
		return runtime.Status{}, imageNotFound(spec)
	case err != nil:
		return runtime.Status{}, fmt.Errorf("start %s: create container: %w", spec.ID, cause(ctx, err))
	}
	for _, w := range created.Warnings {
		log.Warn("docker warns about the container", "container_id", created.ID, "warning", w)
	}
	if _, err := r.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		// Leave no created container behind, even if ctx has ended.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if _, rmErr := r.cli.ContainerRemove(rmCtx, created.ID, client.ContainerRemoveOptions{Force: true}); rmErr != nil {
			log.Warn("remove container that failed to start", "container_id", created.ID, "err", rmErr)
		}
		return runtime.Status{}, fmt.Errorf("start %s: start container: %w", spec.ID, cause(ctx, err))
	}
	c, err := r.lookup(ctx, spec.ID)
	if err != nil {
		return runtime.Status{}, fmt.Errorf("start %s: %w", spec.ID, cause(ctx, err))
	}
	log.Info("started instance", "container_id", created.ID, "image", spec.Image)
	return status(c), nil
}

// ensureImage checks that the daemon holds the instance's image, and has
// Fetch bring it when it does not.
func (r *Runtime) ensureImage(ctx context.Context, spec runtime.Spec) error {
	_, err := r.cli.ImageInspect(ctx, spec.Image)
	switch {
	case err == nil:
		return nil
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("start %s: inspect image %s: %w", spec.ID, spec.Image, cause(ctx, err))
	case r.fetch == nil:
		return imageNotFound(spec)
	}
	start := time.Now()
	r.log.Info("image not on this node; fetching it", "instance_id", spec.ID, "image", spec.Image)
	if err := r.fetch(ctx, spec.Image); err != nil {
		return fmt.Errorf("start %s: %w: %w", spec.ID, ErrImageNotFound, err)
	}
	r.log.Info("image fetched", "instance_id", spec.ID, "image", spec.Image, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func imageNotFound(spec runtime.Spec) error {
	return fmt.Errorf("start %s: image %s not found locally; build it with registry-cli add: %w", spec.ID, spec.Image, ErrImageNotFound)
}

// config is the container's configuration: the runtime's labels win over
// Spec.Labels of the same name.
func (r *Runtime) config(spec runtime.Spec) *container.Config {
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[runtime.LabelManaged] = "true"
	labels[runtime.LabelInstance] = spec.ID
	labels[runtime.LabelNode] = r.node
	env := make([]string, 0, len(spec.Env))
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		env = append(env, k+"="+spec.Env[k])
	}
	cfg := &container.Config{Image: spec.Image, Env: env, Labels: labels}
	if len(spec.Command) > 0 {
		cfg.Cmd = slices.Clone(spec.Command)
	}
	return cfg
}

// hostConfig sets host networking, limits and the restart policy.
func hostConfig(spec runtime.Spec) *container.HostConfig {
	hc := &container.HostConfig{
		NetworkMode:   network.NetworkHost,
		RestartPolicy: restartPolicy(spec.MaxRestarts),
	}
	if spec.CPU > 0 {
		hc.NanoCPUs = int64(spec.CPU) * 1_000_000 // millicores to billionths
	}
	if spec.CPURequest > 0 {
		hc.CPUShares = max(int64(spec.CPURequest)*1024/1000, 2) // Docker's minimum weight is 2
	}
	if spec.Memory > 0 {
		hc.Memory = int64(spec.Memory) << 20
	}
	return hc
}

// restartPolicy restarts failures up to maxRestarts times. Docker reads a
// MaximumRetryCount of 0 as no limit, so no restarts at all is policy "no".
func restartPolicy(maxRestarts int) container.RestartPolicy {
	if maxRestarts == 0 {
		return container.RestartPolicy{Name: container.RestartPolicyDisabled}
	}
	return container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: maxRestarts}
}

// lookup inspects the instance's container, which must be labelled as
// managed by this node: another node's container is not found.
func (r *Runtime) lookup(ctx context.Context, id string) (container.InspectResponse, error) {
	if (runtime.Spec{ID: id}).Validate() != nil {
		return container.InspectResponse{}, fmt.Errorf("instance %q: %w", id, runtime.ErrNotFound)
	}
	res, err := r.cli.ContainerInspect(ctx, containerName(id), client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return container.InspectResponse{}, fmt.Errorf("instance %s: %w", id, runtime.ErrNotFound)
	}
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspect container %s: %w", containerName(id), cause(ctx, err))
	}
	if !r.owns(res.Container.Config) {
		return container.InspectResponse{}, fmt.Errorf("instance %s: container %s is not this node's: %w", id, containerName(id), runtime.ErrNotFound)
	}
	return res.Container, nil
}

func (r *Runtime) owns(cfg *container.Config) bool {
	return cfg != nil && cfg.Labels[runtime.LabelManaged] == "true" && cfg.Labels[runtime.LabelNode] == r.node
}

// status maps a container to runtime terms. Docker keeps a container
// running through its restarts ("restarting" is between two runs); a
// container created but never started, or being removed, is down for good.
func status(c container.InspectResponse) runtime.Status {
	st := runtime.Status{
		ID:       strings.TrimPrefix(strings.TrimPrefix(c.Name, "/"), containerPrefix),
		State:    runtime.StateUnknown,
		Restarts: c.RestartCount,
		Ref:      c.ID,
	}
	if c.Config != nil {
		st.Labels = maps.Clone(c.Config.Labels)
		if id := st.Labels[runtime.LabelInstance]; id != "" {
			st.ID = id
		}
	}
	if s := c.State; s != nil {
		switch s.Status {
		case container.StateRunning, container.StateRestarting, container.StatePaused:
			st.State = runtime.StateRunning
		case container.StateExited, container.StateDead, container.StateCreated, container.StateRemoving:
			st.State = runtime.StateExited
		}
		st.ExitCode = s.ExitCode
		if t, err := time.Parse(time.RFC3339Nano, s.StartedAt); err == nil && t.Year() > 1 {
			st.StartedAt = t
		}
	}
	return st
}

// Inspect returns the instance's status.
func (r *Runtime) Inspect(ctx context.Context, id string) (runtime.Status, error) {
	ctx, done, err := r.call(ctx)
	if err != nil {
		return runtime.Status{}, fmt.Errorf("inspect %s: %w", id, err)
	}
	defer done()
	c, err := r.lookup(ctx, id)
	if err != nil {
		return runtime.Status{}, fmt.Errorf("inspect: %w", err)
	}
	return status(c), nil
}

// Wait blocks until the container is down for good: neither running nor
// restarting.
func (r *Runtime) Wait(ctx context.Context, id string) (runtime.Status, error) {
	ctx, done, err := r.call(ctx)
	if err != nil {
		return runtime.Status{}, fmt.Errorf("wait for %s: %w", id, err)
	}
	defer done()
	for {
		c, err := r.lookup(ctx, id)
		if err != nil {
			return runtime.Status{}, fmt.Errorf("wait: %w", err)
		}
		if st := status(c); st.State == runtime.StateExited {
			return st, nil
		}
		// "not-running" holds through restarts: Docker counts a
		// restarting container as running.
		res := r.cli.ContainerWait(ctx, c.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
		// Not on ctx.Done: the client cancels the request with ctx, and
		// its goroutine blocks until one of these is read.
		select {
		case <-res.Result:
		case err := <-res.Error:
			if ctx.Err() != nil {
				return runtime.Status{}, fmt.Errorf("wait for %s: %w", id, context.Cause(ctx))
			}
			if cerrdefs.IsNotFound(err) {
				return runtime.Status{}, fmt.Errorf("wait for %s: %w", id, runtime.ErrNotFound)
			}
			return runtime.Status{}, fmt.Errorf("wait for %s: %w", id, err)
		}
	}
}

// Stop stops the container: Docker sends SIGTERM, then SIGKILL after
// timeout rounded up to whole seconds, and cancels any pending restart.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	ctx, done, err := r.call(ctx)
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	defer done()
	c, err := r.lookup(ctx, id)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if status(c).State == runtime.StateExited {
		return nil
	}
	secs := int(math.Ceil(timeout.Seconds()))
	if _, err := r.cli.ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("stop %s: %w", id, runtime.ErrNotFound)
		}
		return fmt.Errorf("stop %s: %w", id, cause(ctx, err))
	}
	r.log.Info("stopped instance", "instance_id", id, "container_id", c.ID)
	return nil
}

// Remove force-removes the container, killing it if it still runs.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	ctx, done, err := r.call(ctx)
	if err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	defer done()
	c, err := r.lookup(ctx, id)
	if err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if _, err := r.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove %s: %w", id, runtime.ErrNotFound)
		}
		return fmt.Errorf("remove %s: %w", id, cause(ctx, err))
	}
	r.log.Info("removed instance", "instance_id", id, "container_id", c.ID)
	return nil
}

// List returns this node's containers, running or not, sorted by ID.
func (r *Runtime) List(ctx context.Context) ([]runtime.Status, error) {
	ctx, done, err := r.call(ctx)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	defer done()
	filters := client.Filters{}.Add("label", runtime.LabelManaged+"=true", runtime.LabelNode+"="+r.node)
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", cause(ctx, err))
	}
	out := make([]runtime.Status, 0, len(res.Items))
	for _, s := range res.Items {
		// The summary lacks the restart count and exit code.
		c, err := r.cli.ContainerInspect(ctx, s.ID, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue // removed since
		}
		if err != nil {
			return nil, fmt.Errorf("list: inspect container %s: %w", s.ID, cause(ctx, err))
		}
		if r.owns(c.Container.Config) {
			out = append(out, status(c.Container))
		}
	}
	slices.SortFunc(out, func(a, b runtime.Status) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Close ends calls in flight with runtime.ErrClosed and closes the
// client's connections. Containers keep running.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() {
		r.endLife()
		r.cli.Close()
	})
	return nil
}

// CPUSeconds returns the CPU time the instance's container has used in
// its current run: cpu_stats.cpu_usage.total_usage of a one-shot stats
// sample (the daemon answers at once, without the second sample a
// streamed one waits a second for). It starts again from 0 when Docker
// restarts the container, and fails while the container is not running.
//
// It asks for the container by name and does not check it is this node's:
// the name is physarum-<id>, and a daemon has one container of a name, so
// an instance of this node is the only container the name can be.
func (r *Runtime) CPUSeconds(ctx context.Context, id string) (float64, error) {
	ctx, done, err := r.call(ctx)
	if err != nil {
		return 0, fmt.Errorf("cpu time of %s: %w", id, err)
	}
	defer done()
	res, err := r.cli.ContainerStats(ctx, containerName(id), client.ContainerStatsOptions{})
	if cerrdefs.IsNotFound(err) {
		return 0, fmt.Errorf("cpu time: instance %s: %w", id, runtime.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("stats of container %s: %w", containerName(id), cause(ctx, err))
	}
	defer res.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&st); err != nil {
		return 0, fmt.Errorf("stats of container %s: %w", containerName(id), cause(ctx, err))
	}
	return cpuSeconds(id, st)
}

// cpuSeconds reads the CPU time of a stats sample: total_usage, in
// nanoseconds on Linux. A container that is not running has a sample
// with no read time.
func cpuSeconds(id string, st container.StatsResponse) (float64, error) {
	if st.Read.IsZero() || st.Read.Year() <= 1 {
		return 0, fmt.Errorf("cpu time of %s: not running", id)
	}
	if st.OSType == "windows" {
		return 0, fmt.Errorf("cpu time of %s: windows containers are not measured", id)
	}
	return float64(st.CPUStats.CPUUsage.TotalUsage) / 1e9, nil
}

// Tail returns the last n lines of the container's output.
func (r *Runtime) Tail(ctx context.Context, id string, n int) (string, error) {
	ctx, done, err := r.call(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	rc, err := r.cli.ContainerLogs(ctx, containerName(id), client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n),
	})
	if err != nil {
		return "", fmt.Errorf("logs of %s: %w", id, err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 1<<20)); err != nil {
		return "", fmt.Errorf("logs of %s: %w", id, err)
	}
	return strings.TrimRight(out.String(), "\n"), nil
}
