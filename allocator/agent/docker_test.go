package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/physarum-p2p/physarum/allocator/agent"
	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/allocator/runtime/docker"
	"github.com/physarum-p2p/physarum/allocator/runtimetest"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-cli/imagebuild"
)

// dockerWorld adds what the Docker runtime needs: a daemon (or a skip) and
// images built FROM scratch with the proxy and the test task inside.
type dockerWorld struct {
	*world
	cli *client.Client
}

func newDockerWorld(t *testing.T) *dockerWorld {
	t.Helper()
	w := newWorld(t)
	cli, err := client.New(client.FromEnv)
	if err == nil {
		_, err = cli.Ping(t.Context(), client.PingOptions{})
	}
	if err != nil {
		t.Skipf("docker: no daemon answers: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return &dockerWorld{world: w, cli: cli}
}

// image builds an image running the test task with env, and removes it
// when the test ends.
func (w *dockerWorld) image(name string, env map[string]string) string {
	w.t.Helper()
	return w.imageWithCmd(name, "/app/testtask", env)
}

// imageWithCmd builds an image holding the test task, with cmd as its CMD.
func (w *dockerWorld) imageWithCmd(name, cmd string, env map[string]string) string {
	t := w.t
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(w.task)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testtask"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	tag := "physarum-test-" + name + ":latest"
	id, err := imagebuild.Build(t.Context(), w.cli, imagebuild.Request{
		Conf:  imagebuild.DockerConf{From: "scratch", Copy: [][2]string{{"testtask", "testtask"}}, Cmd: cmd, Env: env},
		Proxy: w.proxy, Dir: dir, Image: tag,
	})
	if err != nil {
		t.Fatalf("build image: %v", err)
	}
	t.Cleanup(func() {
		// Not t.Context(): it is cancelled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// This cleanup runs before the allocator's (registered earlier),
		// so its containers may still run: remove them first.
		if res, err := w.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("ancestor", id)}); err == nil {
			for _, c := range res.Items {
				_, _ = w.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
			}
		}
		if _, err := w.cli.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Logf("remove image %s: %v", tag, err)
		}
	})
	return id
}

func (w *dockerWorld) dockerService(name string, env map[string]string) {
	w.t.Helper()
	info := registry.ServiceInfo{DockerHash: w.image(name, env), CpuReq: 250, MemoryReq: 64}
	if _, err := w.rc.AddService(w.t.Context(), name, info); err != nil {
		w.t.Fatal(err)
	}
}

// dockerAllocator starts an agent with the Docker runtime on node n.
func (w *dockerWorld) dockerAllocator(n *p2ptest.Node, cfg agent.Config) *agent.Agent {
	t := w.t
	t.Helper()
	rt, err := docker.New(t.Context(), docker.Options{Node: n.ID().String(), Logger: p2ptest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.CPU, cfg.Memory, cfg.LeaseTTL, cfg.StatusEvery = 2000, 2048, 3*time.Second, 100*time.Millisecond
	cfg.StartTimeout, cfg.Logger = 30*time.Second, p2ptest.Logger(t)
	a, err := agent.New(t.Context(), n.Node, registryClient(t, n), []runtime.Runtime{rt}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		_ = rt.Close()
	})
	return a
}

func (w *dockerWorld) node() *p2ptest.Node {
	n := p2ptest.Start(w.t, p2ptest.Spec{Bootstraps: bootOf(w.world)})
	if err := n.Bootstrapped(w.t.Context()); err != nil {
		w.t.Fatal(err)
	}
	return n
}

func TestDockerDeployRunsAContainerWithLimitsAndLabels(t *testing.T) {
	w := newDockerWorld(t)
	n := w.node()
	w.dockerAllocator(n, agent.Config{MaxRestarts: 3})
	w.dockerService("hello-docker", map[string]string{runtimetest.EnvTask: runtimetest.ModeHTTP, runtimetest.EnvReply: "hello from a container"})
	start := time.Now()
	resp, err := w.deploy(n, "hello-docker", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("docker deploy to running: %s", time.Since(start))
	if resp.Instance.Runtime != registry.RuntimeDocker {
		t.Fatalf("instance %+v", resp.Instance)
	}
	if body, err := w.get(*resp.Instance); err != nil || body != "hello from a container" {
		t.Fatalf("through the proxy in the container: %q %v", body, err)
	}
	res, err := w.cli.ContainerInspect(t.Context(), "physarum-"+resp.Instance.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Container
	// The service needs 250m and 64 MiB; the proxy beside it gets its allowance.
	wantCPU := int64(250+agent.ProxyCPUAllowance) * 1_000_000
	wantMem := int64(64+agent.ProxyMemoryAllowance) << 20
	if c.HostConfig.NanoCPUs != wantCPU || c.HostConfig.Memory != wantMem || c.HostConfig.CPUShares != 256 {
		t.Fatalf("limits: NanoCPUs %d, Memory %d, CPUShares %d; want %d, %d, 256",
			c.HostConfig.NanoCPUs, c.HostConfig.Memory, c.HostConfig.CPUShares, wantCPU, wantMem)
	}
	for k, v := range map[string]string{runtime.LabelService: "hello-docker", runtime.LabelInstance: resp.Instance.ID,
		runtime.LabelNode: n.ID().String(), runtime.LabelManaged: "true"} {
		if c.Config.Labels[k] != v {
			t.Fatalf("label %s = %q, want %q", k, c.Config.Labels[k], v)
		}
	}
	if c.HostConfig.RestartPolicy.Name != "on-failure" || c.HostConfig.RestartPolicy.MaximumRetryCount != 3 {
		t.Fatalf("restart policy %+v", c.HostConfig.RestartPolicy)
	}
}

func TestDockerCrashingContainerIsRestartedThenMarkedFailed(t *testing.T) {
	w := newDockerWorld(t)
	n := w.node()
	w.dockerAllocator(n, agent.Config{MaxRestarts: 3})
	w.dockerService("flaky-docker", map[string]string{runtimetest.EnvTask: runtimetest.ModeCrash, runtimetest.EnvCrashes: "2"})
	resp, err := w.deploy(n, "flaky-docker", false)
	if err != nil {
		t.Fatalf("a container that crashes twice then runs: %v", err)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		if rec, _ := w.record(resp.Instance.ID); rec.Restarts != 2 {
			return fmt.Errorf("record shows %d restarts", rec.Restarts)
		}
		return nil
	})
	w.dockerService("broken-docker", map[string]string{runtimetest.EnvTask: runtimetest.ModeCrash, runtimetest.EnvCrashes: "1000"})
	if _, err := w.deploy(n, "broken-docker", false); wire.CodeOf(err) != wire.CodeRuntimeError {
		t.Fatalf("a container that keeps crashing: %v", err)
	}
	insts, _ := w.rc.ListInstances(t.Context(), "broken-docker")
	if len(insts) != 1 || insts[0].State != registry.StateFailed {
		t.Fatalf("failed container not reported: %+v", insts)
	}
}

func TestDockerContainersAreAdoptedAfterARestart(t *testing.T) {
	w := newDockerWorld(t)
	n := w.node()
	first := w.dockerAllocator(n, agent.Config{KeepInstances: true})
	w.dockerService("kept-docker", map[string]string{runtimetest.EnvTask: runtimetest.ModeHTTP, runtimetest.EnvReply: "still here"})
	resp, err := w.deploy(n, "kept-docker", false)
	if err != nil {
		t.Fatal(err)
	}
	first.Close() // as after a crash: the container keeps running
	second := w.dockerAllocator(n, agent.Config{})
	eventually.Succeeds(t, 20*time.Second, func() error {
		insts := second.Instances()
		if len(insts) != 1 || insts[0].ID != resp.Instance.ID || insts[0].State != registry.StateRunning {
			return fmt.Errorf("adopted %+v", insts)
		}
		return nil
	})
	if body, err := w.get(*resp.Instance); err != nil || body != "still here" {
		t.Fatalf("adopted container: %q %v", body, err)
	}
}

// A Docker service's Command is the container's command and its
// Environment is in the container's environment: an image whose own CMD
// names no program runs the service's Command, which answers with the
// reply the Environment gives it; the compute is a label.
func TestDockerCommandAndEnvironmentReachTheContainer(t *testing.T) {
	w := newDockerWorld(t)
	n := w.node()
	w.dockerAllocator(n, agent.Config{})
	image := w.imageWithCmd("cmd-env", "/app/no-such-program", map[string]string{runtimetest.EnvTask: runtimetest.ModeHTTP})
	info := registry.ServiceInfo{DockerHash: image, CpuReq: 100, MemoryReq: 64, Command: "/app/testtask",
		Environment: map[string]string{runtimetest.EnvReply: "told by Environment"}}
	if _, err := w.rc.AddService(t.Context(), "cmd-env", info); err != nil {
		t.Fatal(err)
	}
	resp, err := w.send(n, deploy.Request{Op: deploy.OpDeploy, Service: "cmd-env", ID: "cmd-env-pinned", Compute: "site-a"})
	if err != nil {
		t.Fatal(err)
	}
	if body, err := w.get(*resp.Instance); err != nil || body != "told by Environment" {
		t.Fatalf("through the proxy in the container: %q %v", body, err)
	}
	res, err := w.cli.ContainerInspect(t.Context(), "physarum-cmd-env-pinned", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Container.Config; !slices.Equal(c.Cmd, []string{"/app/testtask"}) || c.Labels["physarum.compute"] != "site-a" {
		t.Fatalf("container command %q, compute label %q", c.Cmd, c.Labels["physarum.compute"])
	}
}
