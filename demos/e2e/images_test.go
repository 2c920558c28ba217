package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/physarum-p2p/physarum/common/dockerd"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/proctest"
)

// dockerAllocator starts a Docker allocator named name against the daemon
// at host ("": the machine's), with its metrics on metrics.
func (n *network) dockerAllocator(name, host, metrics string) *proctest.Proc {
	n.t.Helper()
	dir := n.t.TempDir()
	a := launch.Allocator{
		Name: name, Runtime: "docker", LeaseTTL: 3 * time.Second,
		Node: launch.Node{KeyFile: filepath.Join(dir, "key"), Metrics: metrics}, DataDir: filepath.Join(dir, "data"),
	}
	env := n.env
	if host != "" {
		env = append(append([]string(nil), n.env...), "DOCKER_HOST="+host)
	}
	p := proctest.Start(n.t, name, n.bin["allocator"], a.Args(), env)
	p.WaitOutput(launch.AllocatorReady, 30*time.Second)
	return p
}

// addDockerHello builds the hello demo into an image with registry-cli add
// (in the machine's daemon) with the given -replicas, and returns the
// image ID it registered.
func (n *network) addDockerHello(service string, replicas int) string {
	n.t.Helper()
	conf := filepath.Join(n.t.TempDir(), "hello.json")
	if err := os.WriteFile(conf, []byte(`{"NetworkSoftReq":{"RTT":20},"NetworkHardReq":{"RTT":50},"CpuReq":100,"MemoryReq":32,
"DockerConf":{"From":"scratch","Copy":[["hello","hello"]],"Cmd":"/app/hello"}}`), 0o644); err != nil {
		n.t.Fatal(err)
	}
	tag := "physarum-test-" + service + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
	n.mustCLI("add", "-replicas", strconv.Itoa(replicas), "-dir", filepath.Dir(n.bin["hello"]), conf, tag, service)
	cli := dockerClient(n.t, "")
	n.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	img, err := cli.ImageInspect(n.t.Context(), tag)
	if err != nil {
		n.t.Fatal(err)
	}
	return img.ID
}

// dockerClient talks to the daemon at host ("": the machine's), or skips
// the test where none answers.
func dockerClient(t *testing.T, host string) *client.Client {
	t.Helper()
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.New(opts...)
	if err == nil {
		_, err = cli.Ping(t.Context(), client.PingOptions{NegotiateAPIVersion: true})
	}
	if err != nil {
		t.Skipf("docker: no daemon answers: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// metric reads one sample of a Prometheus text endpoint (0 when absent).
func metric(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(string(b))
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestADockerServiceRunsOnADaemonThatLacksItsImage: two Docker hosts on
// one machine. The image is built in the first; two instances pinned to
// the allocator of the second make it travel there, once, and answer
// through a client proxy.
func TestADockerServiceRunsOnADaemonThatLacksItsImage(t *testing.T) {
	n := newNetwork(t)
	dockerClient(t, "")
	second := dockerd.Test(t)
	n.registry()
	aMetrics := "127.0.0.1:" + strconv.Itoa(freeport.T(t))
	n.dockerAllocator("img-a", "", aMetrics)
	n.dockerAllocator("img-b", second.Host, "")
	_, proxy := n.proxy()

	id := n.addDockerHello("hello-img", 1) // img-a holds it already: no push
	if _, err := second.Client.ImageInspect(t.Context(), id); err == nil {
		t.Fatal("the second daemon got the image at add time; -replicas 1 should have left it alone")
	}

	start := time.Now()
	n.mustCLI("scale", "hello-img", "2", "-compute", "img-b")
	st := waitRunning(t, n.api, "hello-img", "img-b", 2, 2*time.Minute)
	t.Logf("2 instances running on the second daemon %s after the scale", time.Since(start).Round(time.Millisecond))
	img, err := second.Client.ImageInspect(t.Context(), id)
	if err != nil || img.ID != id {
		t.Fatalf("the second daemon's image: %v %v, want ID %s", img.ID, err, id)
	}
	if got := metric(t, aMetrics, `physarum_allocator_image_transfers_total{direction="out",result="ok"}`); got != 1 {
		t.Errorf("img-a sent the image %v times for two concurrent starts, want 1", got)
	}
	// The instances on the second daemon answer through a client proxy.
	ids := map[string]bool{}
	for _, in := range st.Instances {
		ids[in.ID] = true
	}
	eventually.Succeeds(t, time.Minute, func() error {
		resp, err := http.Get(proxy + "/hello-img/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		inst, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "hello from ")
		if resp.StatusCode != http.StatusOK || !ok || !ids[inst] {
			return fmt.Errorf("%d %q: want an answer from an instance on img-b %v", resp.StatusCode, b, ids)
		}
		return nil
	})
}
