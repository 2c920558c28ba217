package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/common/psk"
	"github.com/physarum-p2p/physarum/registry"
)

func TestAddBuildsAnImageFromScratchThatRunsWithTheProxyInside(t *testing.T) {
	n := startRegistry(t)
	cli, err := client.New(client.FromEnv)
	if err == nil {
		_, err = cli.Ping(t.Context(), client.PingOptions{})
	}
	if err != nil {
		t.Skipf("docker: no daemon answers: %v", err)
	}
	defer cli.Close()
	// registry-cli finds the proxy beside itself, as after make build.
	hello := proctest.Build(t, "./demos/hello", "./proxy")
	proctest.Build(t, "./proxy")
	conf := writeFile(t, "hello.json", `{"NetworkSoftReq":{"RTT":20},"NetworkHardReq":{"RTT":50},"CpuReq":100,"MemoryReq":32,
"DockerConf":{"From":"scratch","Copy":[["hello","hello"]],"Cmd":"/app/hello"}}`)
	image := "physarum-test-cli-hello:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	// No allocator takes the image: -replicas 0 registers it all the same.
	out, errs, code := n.run("add", "-replicas", "0", "-dir", filepath.Dir(hello), conf, image, "hello-img")
	if code != 0 {
		t.Fatalf("add: exit %d\n%s", code, errs)
	}
	t.Cleanup(func() {
		// Not t.Context(): it is cancelled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = cli.ImageRemove(ctx, image, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	if !strings.Contains(out, "added service hello-img") || !strings.Contains(errs, "FROM scratch") {
		t.Fatalf("add said:\n%s%s", out, errs)
	}
	var info registry.ServiceInfo
	got, _, _ := n.run("-json", "get", "hello-img")
	if err := json.Unmarshal([]byte(got), &info); err != nil || !strings.HasPrefix(info.DockerHash, "sha256:") {
		t.Fatalf("registered %q: %v", got, err)
	}
	img, err := cli.ImageInspect(t.Context(), info.DockerHash)
	if err != nil {
		t.Fatal(err)
	}
	if ep := strings.Join(img.Config.Entrypoint, " "); ep != "/app/proxy -instance --" {
		t.Fatalf("entrypoint %q, want the proxy", ep)
	}

	// Run it as an allocator would, and see the proxy inside start the
	// service as its child.
	key, _ := psk.Derive(p2ptest.DefaultPassphrase)
	ports := map[string]int{}
	for _, k := range []string{instenv.ServicePort, instenv.ProxyPort, instenv.P2PPort, instenv.MetricsPort} {
		ports[k] = freeport.T(t)
	}
	env := []string{
		instenv.Service + "=hello-img", instenv.InstanceID + "=hello-img-test", instenv.P2PIP + "=127.0.0.1",
		instenv.PSK + "=" + instenv.EncodePSK(key), instenv.Bootstraps + "=" + n.boot,
	}
	for k, v := range ports {
		env = append(env, k+"="+strconv.Itoa(v))
	}
	created, err := cli.ContainerCreate(t.Context(), client.ContainerCreateOptions{
		Config:     &container.Config{Image: info.DockerHash, Env: env},
		HostConfig: &container.HostConfig{NetworkMode: network.NetworkHost},
		Name:       "physarum-test-cli-hello-" + strconv.FormatInt(time.Now().UnixNano(), 36),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Not t.Context(): it is cancelled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = cli.ContainerRemove(ctx, created.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(t.Context(), created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually.Succeeds(t, 30*time.Second, func() error {
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d%s", ports[instenv.ProxyPort], instenv.StatusPath))
		if err != nil || !strings.Contains(body, `"ready":true`) {
			return fmt.Errorf("proxy status %q %w", body, err)
		}
		return nil
	})
	if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", ports[instenv.ServicePort])); err != nil || !strings.HasPrefix(body, "hello from") {
		t.Fatalf("the service in the image: %q %v", body, err)
	}
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
