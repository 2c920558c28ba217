package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/physarum-p2p/physarum/common/dockerd"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

// machineDocker returns a client of this machine's Docker daemon, or
// skips t where none answers.
func machineDocker(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err == nil {
		_, err = cli.Ping(t.Context(), client.PingOptions{NegotiateAPIVersion: true})
	}
	if err != nil {
		t.Skipf("docker: no daemon answers: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// imageConfig is a DockerConf service config: with -use-existing-image
// only its requirements count.
const imageConfig = `{"CpuReq":100,"MemoryReq":16,"DockerConf":{"From":"scratch","Cmd":"/payload"}}`

// startDockerAllocator starts a Docker-runtime allocator named name on the
// registry of n, against the Docker daemon at dockerHost ("": this
// machine's), and waits until the registry lists it with Docker.
func (n *cliNet) startDockerAllocator(name, dockerHost string) {
	n.t.Helper()
	bin := proctest.Build(n.t, "./allocator", "./proxy")
	dir := n.t.TempDir()
	env := []string{"P2P_PSK=" + p2ptest.DefaultPassphrase, nodeflags.EnvBootstraps + "=" + n.boot, nodeflags.EnvFastTiming + "=1"}
	if dockerHost == "" {
		dockerHost = os.Getenv("DOCKER_HOST")
	}
	if dockerHost != "" {
		env = append(env, "DOCKER_HOST="+dockerHost)
	}
	p := proctest.Start(n.t, name, bin, launch.Allocator{
		Node: launch.Node{KeyFile: filepath.Join(dir, "key")}, Name: name,
		DataDir: filepath.Join(dir, "data"), Runtime: registry.RuntimeDocker, LeaseTTL: 3 * time.Second,
	}.Args(), env)
	p.WaitOutput(launch.AllocatorReady, time.Minute)
	n.waitNode(name, registry.RuntimeDocker)
}

// waitNode waits until the registry lists the allocator name ("": any)
// with runtime.
func (n *cliNet) waitNode(name, runtime string) {
	n.t.Helper()
	eventually.Succeeds(n.t, 30*time.Second, func() error {
		var nodes []registry.Node
		out, errs, code := n.run("-json", "nodes")
		if code != 0 {
			return fmt.Errorf("nodes: exit %d: %s", code, errs)
		}
		if err := json.Unmarshal([]byte(out), &nodes); err != nil {
			return err
		}
		for _, nd := range nodes {
			if (name == "" || nd.Name == name) && slices.Contains(nd.Runtimes, runtime) {
				return nil
			}
		}
		return fmt.Errorf("no node %s with runtime %s in %s", name, runtime, out)
	})
}

// add of a DockerConf service needs a Docker allocator to take its image:
// on a network of process allocators it fails in one line, exit 1, and
// registers nothing.
func TestAddWithoutDockerAllocatorFailsAndRegistersNothing(t *testing.T) {
	n := startRegistry(t)
	id := dockerd.TestImage(t, machineDocker(t), 64<<10)
	n.startAllocator("")
	n.waitNode("", registry.RuntimeProcess)

	_, errs, code := n.run("add", "-use-existing-image", writeFile(t, "img.json", imageConfig), id, "img")
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "registry-cli: no Docker allocator in the network can take image "+id+";") ||
		!strings.Contains(last, "-use-existing-image") || !strings.Contains(last, "-replicas 0") {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	if _, errs, code := n.run("get", "img"); code != 1 || !strings.Contains(errs, `no service named "img"`) {
		t.Fatalf("the service was registered: get: exit %d: %s", code, errs)
	}
	// -replicas 0: registered as before, the image left where it is.
	if out, errs, code := n.run("add", "-replicas", "0", "-use-existing-image", writeFile(t, "img.json", imageConfig), id, "img"); code != 0 ||
		!strings.Contains(out, "added service img") || strings.Contains(errs, "pushing") {
		t.Fatalf("-replicas 0: exit %d\n%s%s", code, out, errs)
	}
}

// add -replicas 2 on a network of two Docker allocators, each on a daemon
// of its own, leaves the image on both before it returns: the one on this
// machine's daemon had it, the other was sent it.
func TestAddHandsTheImageToTwoDockerAllocators(t *testing.T) {
	n := startRegistry(t)
	id := dockerd.TestImage(t, machineDocker(t), 16<<20)
	second := dockerd.Test(t)
	n.startDockerAllocator("docker-here", "")
	n.startDockerAllocator("docker-second", second.Host)
	if _, err := second.Client.ImageInspect(t.Context(), id); err == nil {
		t.Fatal("the second daemon holds the image before add")
	}

	out, errs, code := n.run("-json", "add", "-replicas", "2", "-use-existing-image", writeFile(t, "img.json", imageConfig), id, "img")
	t.Logf("add said on stderr:\n%s", errs)
	if code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, out, errs)
	}
	var res struct {
		Message  string
		Replicas []struct {
			Node    string
			PeerID  string
			Had     bool
			Bytes   int64
			Seconds float64
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("add -json: %v\n%s", err, out)
	}
	had := map[string]bool{}
	for _, r := range res.Replicas {
		had[r.Node] = r.Had
		if !r.Had && (r.Bytes == 0 || r.Seconds == 0 || r.PeerID == "") {
			t.Errorf("replica %+v: a transfer without bytes or time", r)
		}
	}
	if sent, ok := had["docker-second"]; len(res.Replicas) != 2 || !had["docker-here"] || !ok || sent {
		t.Fatalf("replicas %+v: want docker-here (had it) and docker-second (sent it)", res.Replicas)
	}
	if img, err := second.Client.ImageInspect(t.Context(), id); err != nil || img.ID != id {
		t.Fatalf("the second daemon after add: %v", err)
	}
	for _, want := range []string{"docker-here had it already", "docker-second has it: ", "MiB/s"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if !strings.Contains(res.Message, "added service img") {
		t.Errorf("message %q", res.Message)
	}
	var info registry.ServiceInfo
	if got, _, _ := n.run("-json", "get", "img"); json.Unmarshal([]byte(got), &info) != nil || info.DockerHash != id {
		t.Fatalf("registered %q", got)
	}
}
