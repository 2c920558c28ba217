package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/allocator/runtime/docker"
	"github.com/physarum-p2p/physarum/allocator/runtimetest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testtaskPkg = "github.com/physarum-p2p/physarum/allocator/runtimetest/testtask"

// newRuntime returns a Docker runtime for node, or skips the test when no
// daemon answers.
func newRuntime(t *testing.T, node string) *docker.Runtime {
	t.Helper()
	rt, err := docker.New(t.Context(), docker.Options{Node: node, Logger: p2ptest.Logger(t)})
	if errors.Is(err, docker.ErrUnavailable) {
		t.Skipf("docker: no daemon answers: %v", err)
	}
	if err != nil {
		t.Fatalf("new docker runtime: %v", err)
	}
	return rt
}

// apiClient is a plain Engine API client, for what the tests check and
// clean up behind the runtime's back.
func apiClient(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// buildTestImage builds a FROM scratch image holding a static build of
// runtimetest/testtask as its entrypoint, and removes it when t ends.
// Nothing is pulled.
func buildTestImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("build the test task: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "testtask")
	cmd := exec.CommandContext(t.Context(), goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, testtaskPkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test task: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buildCtx bytes.Buffer
	tw := tar.NewWriter(&buildCtx)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY testtask /testtask\nENTRYPOINT [\"/testtask\"]\n")},
		{"testtask", 0o755, exe},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	tag := fmt.Sprintf("physarum-test-task:%d-%08x", os.Getpid(), rand.Uint32())
	res, err := cli.ImageBuild(t.Context(), &buildCtx, client.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1, // BuildKit needs a session; the classic builder does not
	})
	if err != nil {
		t.Fatalf("build image %s: %v", tag, err)
	}
	defer res.Body.Close()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Errorf("remove image %s: %v", tag, err)
		}
	})
	dec := json.NewDecoder(res.Body)
	for {
		var msg jsonstream.Message
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("build image %s: read output: %v", tag, err)
		}
		if msg.Error != nil {
			t.Fatalf("build image %s: %s", tag, msg.Error.Message)
		}
	}
	return tag
}

// removeNodeContainers is the safety net behind the suite's own cleanup:
// it force-removes whatever containers node still has.
func removeNodeContainers(t *testing.T, cli *client.Client, node string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := cli.ContainerList(ctx, client.ContainerListOptions{
			All:     true,
			Filters: client.Filters{}.Add("label", runtime.LabelNode+"="+node),
		})
		if err != nil {
			t.Errorf("list containers of node %s: %v", node, err)
			return
		}
		for _, c := range res.Items {
			t.Errorf("container %s of node %s left behind; removing it", c.Names, node)
			_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
	})
}

func newNode() string { return fmt.Sprintf("test-node-%08x", rand.Uint32()) }

func TestDocker(t *testing.T) {
	newRuntime(t, "probe").Close() // skips without a daemon
	cli := apiClient(t)
	image := buildTestImage(t, cli)

	t.Run("Conformance", func(t *testing.T) {
		var nodes sync.Map // *testing.T -> node ID
		nodeOf := func(t *testing.T) string {
			t.Helper()
			if n, ok := nodes.Load(t); ok {
				return n.(string)
			}
			n := newNode()
			nodes.Store(t, n)
			removeNodeContainers(t, cli, n)
			return n
		}
		runtimetest.Run(t, func(t *testing.T) runtime.Runtime {
			t.Helper()
			return newRuntime(t, nodeOf(t))
		}, runtimetest.Workload{
			Spec: func(env map[string]string) runtime.Spec {
				return runtime.Spec{Image: image, Env: env}
			},
			CheckApplied: func(t *testing.T, spec runtime.Spec, st runtime.Status) {
				t.Helper()
				checkContainer(t, cli, nodeOf(t), spec, st)
			},
		})
	})

	t.Run("NodesSeeOnlyTheirOwn", func(t *testing.T) {
		t.Parallel()
		nodeA, nodeB := newNode(), newNode()
		removeNodeContainers(t, cli, nodeA)
		removeNodeContainers(t, cli, nodeB)
		a, b := newRuntime(t, nodeA), newRuntime(t, nodeB)
		defer a.Close()
		defer b.Close()
		spec := runtime.Spec{
			ID:    fmt.Sprintf("rt-%08x", rand.Uint32()),
			Image: image,
			Env:   map[string]string{runtimetest.EnvTask: runtimetest.ModeSleep},
		}
		if _, err := a.Start(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := a.Remove(context.WithoutCancel(t.Context()), spec.ID); err != nil {
				t.Errorf("remove: %v", err)
			}
		}()
		if sts, err := b.List(t.Context()); err != nil || len(sts) != 0 {
			t.Errorf("other node's List = %v, %v; want nothing", sts, err)
		}
		if _, err := b.Inspect(t.Context(), spec.ID); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("other node's Inspect: %v; want ErrNotFound", err)
		}
		if err := b.Stop(t.Context(), spec.ID, time.Second); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("other node's Stop: %v; want ErrNotFound", err)
		}
		if err := b.Remove(t.Context(), spec.ID); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("other node's Remove: %v; want ErrNotFound", err)
		}
		if sts, err := a.List(t.Context()); err != nil || len(sts) != 1 || sts[0].State != runtime.StateRunning {
			t.Errorf("owner's List = %v, %v; want %s running", sts, err, spec.ID)
		}
	})

	t.Run("MissingImageIsNotPulled", func(t *testing.T) {
		t.Parallel()
		node := newNode()
		removeNodeContainers(t, cli, node)
		rt := newRuntime(t, node)
		defer rt.Close()
		const missing = "physarum-test-missing:never-built"
		spec := runtime.Spec{ID: fmt.Sprintf("rt-%08x", rand.Uint32()), Image: missing}
		_, err := rt.Start(t.Context(), spec)
		if !errors.Is(err, docker.ErrImageNotFound) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "registry-cli add") {
			t.Fatalf("Start with a missing image: %v; want ErrImageNotFound naming %s and registry-cli add", err, missing)
		}
		if _, err := cli.ContainerInspect(t.Context(), "physarum-"+spec.ID, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
			t.Errorf("container after a failed Start: %v; want none", err)
		}
		if _, err := cli.ImageInspect(t.Context(), missing); !cerrdefs.IsNotFound(err) {
			t.Errorf("image %s after Start: %v; want not pulled", missing, err)
		}
	})

	t.Run("MissingImageIsFetchedFirst", func(t *testing.T) {
		t.Parallel()
		node := newNode()
		removeNodeContainers(t, cli, node)
		// The image "arrives" under a new tag when Fetch is called: what
		// the image network does, without a second host.
		arrived := fmt.Sprintf("physarum-test-fetched:%08x", rand.Uint32())
		var asked []string
		rt, err := docker.New(t.Context(), docker.Options{Node: node, Logger: p2ptest.Logger(t), Fetch: func(ctx context.Context, want string) error {
			asked = append(asked, want)
			if want != arrived {
				return errors.New("no node of the network holds image " + want)
			}
			_, err := cli.ImageTag(ctx, client.ImageTagOptions{Source: image, Target: arrived})
			return err
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = cli.ImageRemove(ctx, arrived, client.ImageRemoveOptions{})
		})
		spec := runtime.Spec{ID: fmt.Sprintf("rt-%08x", rand.Uint32()), Image: arrived, Env: map[string]string{runtimetest.EnvTask: runtimetest.ModeSleep}}
		if _, err := rt.Start(t.Context(), spec); err != nil {
			t.Fatalf("Start with an image Fetch brings: %v", err)
		}
		defer func() { _ = rt.Remove(context.Background(), spec.ID) }()
		const missing = "physarum-test-missing:nobody-has-it"
		_, err = rt.Start(t.Context(), runtime.Spec{ID: fmt.Sprintf("rt-%08x", rand.Uint32()), Image: missing})
		if !errors.Is(err, docker.ErrImageNotFound) || !strings.Contains(err.Error(), "no node of the network holds image "+missing) {
			t.Fatalf("Start with an image Fetch cannot bring: %v; want ErrImageNotFound and Fetch's reason", err)
		}
		if len(asked) != 2 || asked[0] != arrived || asked[1] != missing {
			t.Errorf("Fetch asked for %v", asked)
		}
	})

	t.Run("CPUSecondsGrowsWhileItSpins", func(t *testing.T) {
		t.Parallel()
		node := newNode()
		removeNodeContainers(t, cli, node)
		rt := newRuntime(t, node)
		defer rt.Close()
		spec := runtime.Spec{ID: fmt.Sprintf("rt-%08x", rand.Uint32()), Image: image, Env: map[string]string{runtimetest.EnvTask: runtimetest.ModeSpin}}
		if _, err := rt.Start(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := rt.Remove(context.WithoutCancel(t.Context()), spec.ID); err != nil {
				t.Errorf("remove: %v", err)
			}
		}()
		var first float64
		eventually.Succeeds(t, 10*time.Second, func() error {
			var err error
			if first, err = rt.CPUSeconds(t.Context(), spec.ID); err == nil && first <= 0 {
				err = errors.New("no CPU time yet")
			}
			return err
		})
		eventually.Succeeds(t, 20*time.Second, func() error {
			s, err := rt.CPUSeconds(t.Context(), spec.ID)
			if err == nil && s < first+0.3 {
				err = fmt.Errorf("%.2f s of CPU, from %.2f", s, first)
			}
			return err
		})
		if err := rt.Stop(t.Context(), spec.ID, time.Second); err != nil {
			t.Fatal(err)
		}
		if s, err := rt.CPUSeconds(t.Context(), spec.ID); err == nil {
			t.Errorf("stopped container: %.2f s of CPU, want an error", s)
		}
		if _, err := rt.CPUSeconds(t.Context(), "rt-nobody"); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("unknown instance: %v, want ErrNotFound", err)
		}
	})
}

// checkContainer checks through the Engine API that the container of st
// has what spec asks for.
func checkContainer(t *testing.T, cli *client.Client, node string, spec runtime.Spec, st runtime.Status) {
	t.Helper()
	res, err := cli.ContainerInspect(t.Context(), st.Ref, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect container %s: %v", st.Ref, err)
	}
	c := res.Container
	if c.Name != "/physarum-"+spec.ID {
		t.Errorf("container name %q; want /physarum-%s", c.Name, spec.ID)
	}
	hc := c.HostConfig
	if got, want := hc.NanoCPUs, int64(spec.CPU)*1_000_000; got != want {
		t.Errorf("NanoCPUs %d; want %d", got, want)
	}
	if got, want := hc.Memory, int64(spec.Memory)<<20; got != want {
		t.Errorf("Memory %d; want %d", got, want)
	}
	want := container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: spec.MaxRestarts}
	if spec.MaxRestarts == 0 { // Docker would read on-failure:0 as no limit
		want = container.RestartPolicy{Name: container.RestartPolicyDisabled}
	}
	if hc.RestartPolicy != want {
		t.Errorf("restart policy %+v; want %+v", hc.RestartPolicy, want)
	}
	if hc.NetworkMode != "host" {
		t.Errorf("network mode %q; want host", hc.NetworkMode)
	}
	labels := map[string]string{
		runtime.LabelManaged:  "true",
		runtime.LabelInstance: spec.ID,
		runtime.LabelNode:     node,
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	for k, v := range labels {
		if c.Config.Labels[k] != v {
			t.Errorf("container label %s = %q; want %q", k, c.Config.Labels[k], v)
		}
	}
}

func TestNewFailsFastWithoutDaemon(t *testing.T) {
	// A listener that never answers: the daemon is hung, or a firewall
	// drops the traffic.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for _, host := range []string{
		"unix:///nonexistent/physarum-test/docker.sock",
		"tcp://" + silent.Addr().String(),
	} {
		began := time.Now()
		_, err := docker.New(t.Context(), docker.Options{Node: "n", Host: host, ConnectTimeout: 300 * time.Millisecond})
		if !errors.Is(err, docker.ErrUnavailable) {
			t.Errorf("New with host %s: %v; want ErrUnavailable", host, err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("New with host %s took %s; want it to give up after its timeout", host, took)
		}
	}
	if _, err := docker.New(t.Context(), docker.Options{}); err == nil || errors.Is(err, docker.ErrUnavailable) {
		t.Errorf("New without a node ID: %v; want a configuration error", err)
	}
}
