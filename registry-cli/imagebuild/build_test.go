package imagebuild

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// dockerClient returns a client of the local Docker daemon, or skips the
// test when none answers.
func dockerClient(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Skip("docker: no daemon answers: " + err.Error())
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Skip("docker: no daemon answers: " + err.Error())
	}
	return cli
}

// testName returns a fresh physarum-test-* name.
func testName(t *testing.T, what string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	return "physarum-test-" + what + "-" + hex.EncodeToString(b)
}

// removeImageTree removes image ref and every image built on it, newest
// first: a failed classic build leaves its intermediate images behind as
// children of the base image.
func removeImageTree(t *testing.T, cli *client.Client, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		return // never built
	}
	list, err := cli.ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		t.Errorf("clean up image %s: list images: %v", ref, err)
		return
	}
	children := map[string][]string{}
	for _, s := range list.Items {
		children[s.ParentID] = append(children[s.ParentID], s.ID)
	}
	var order []string // parents before children
	var walk func(id string)
	walk = func(id string) {
		order = append(order, id)
		for _, c := range children[id] {
			walk(c)
		}
	}
	walk(img.ID)
	// Removing an image also prunes its untagged parents, some of which may
	// be later in the list: those are already gone.
	for _, id := range slices.Backward(order) {
		if _, err := cli.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("clean up image %s: remove %s: %v", ref, id, err)
		}
	}
}

type report struct {
	Args  []string           `json:"args"`
	Env   map[string]*string `json:"env"`
	Wd    string             `json:"wd"`
	Files map[string]string  `json:"files"`
}

// runImage runs image to completion and returns what the printargs proxy
// reported.
func runImage(t *testing.T, cli *client.Client, image string) report {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	name := testName(t, "container")
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Image: image})
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := cli.ContainerRemove(ctx, created.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container %s: %v", name, err)
		}
	})
	if _, err := cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	wait := cli.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case res := <-wait.Result:
		if res.StatusCode != 0 {
			t.Errorf("container exited with %d", res.StatusCode)
		}
	case err := <-wait.Error:
		t.Fatalf("wait for container: %v", err)
	}
	logs, err := cli.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("container logs: %v", err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		t.Fatalf("read container logs: %v", err)
	}
	var r report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("container output %q (stderr %q): %v", stdout.String(), stderr.String(), err)
	}
	return r
}

// TestBuildAndRun builds a FROM scratch image with a static stand-in proxy,
// runs it, and checks what the entrypoint received; then builds on top of
// it to check base images present locally and build errors.
func TestBuildAndRun(t *testing.T) {
	cli := dockerClient(t)
	proxy := staticProxy(t)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"bin/service":         "not really a binary",
		"static/index.html":   "<h1>hi</h1>",
		"static/css/site.css": "body{}",
		"static/link":         "-> index.html",
		"unlisted":            "not copied",
	})
	os.Chmod(filepath.Join(dir, "bin/service"), 0o755)
	image := testName(t, "imagebuild")
	t.Cleanup(func() { removeImageTree(t, cli, image) })

	conf := DockerConf{
		From:            "scratch",
		Copy:            [][2]string{{"bin/service", "service"}, {"static", "www"}},
		Cmd:             `./service --name 'hello world' "a\"b" C:\\dir --port $SERVICE_PORT`,
		ProxyClientMode: true,
	}
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	id, err := Build(ctx, cli, Request{Conf: conf, Proxy: proxy, Dir: dir, Image: image, Progress: &progress})
	if err != nil {
		t.Fatalf("Build: %v\noutput:\n%s", err, progress.String())
	}
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("Build returned ID %q, want sha256:...", id)
	}
	if !strings.Contains(progress.String(), "FROM scratch") {
		t.Errorf("progress output does not show the build:\n%s", progress.String())
	}

	img, err := cli.ImageInspect(ctx, image)
	if err != nil {
		t.Fatalf("inspect built image: %v", err)
	}
	if img.ID != id {
		t.Errorf("image %s has ID %s, Build returned %s", image, img.ID, id)
	}
	if img.Config == nil || img.Config.Labels[LabelServiceImage] != "true" || img.Config.Labels[LabelProxyClientMode] != "true" {
		t.Errorf("image labels %v, want %s=true and %s=true", img.Config.Labels, LabelServiceImage, LabelProxyClientMode)
	}

	r := runImage(t, cli, image)
	wantArgs := []string{"-instance", "--", "./service", "--name", "hello world", `a"b`, `C:\dir`, "--port", "$SERVICE_PORT"}
	if !slices.Equal(r.Args, wantArgs) {
		t.Errorf("entrypoint received %q\nwant %q", r.Args, wantArgs)
	}
	for _, kv := range EnvDefaults {
		got, ok := r.Env[kv[0]]
		if !ok || got == nil || *got != kv[1] {
			t.Errorf("env %s = %v, want %q", kv[0], got, kv[1])
		}
	}
	if r.Wd != "/app" {
		t.Errorf("working directory %q, want /app", r.Wd)
	}
	wantFiles := map[string]string{
		"/app":                  "dir",
		"/app/proxy":            "file 0755",
		"/app/service":          "file 0755",
		"/app/www":              "dir",
		"/app/www/index.html":   "file 0644",
		"/app/www/css":          "dir",
		"/app/www/css/site.css": "file 0644",
		"/app/www/link":         "symlink -> index.html",
	}
	if !reflect.DeepEqual(r.Files, wantFiles) {
		t.Errorf("files in /app:\n%v\nwant\n%v", r.Files, wantFiles)
	}

	t.Run("local base image, failing RUN", func(t *testing.T) {
		// The image just built has no shell: a RUN on it must fail, and the
		// daemon's error must come back from Build.
		child := testName(t, "imagebuild-child")
		progress.Reset()
		_, err := Build(ctx, cli, Request{
			Conf:     DockerConf{From: image, Run: []string{"true"}, Cmd: "./service"},
			Proxy:    proxy,
			Dir:      dir,
			Image:    child,
			Progress: &progress,
		})
		if !errors.Is(err, ErrBuild) || !strings.HasPrefix(err.Error(), "build image "+child+": docker build failed: ") {
			t.Fatalf("Build = %v, want ErrBuild\noutput:\n%s", err, progress.String())
		}
		if !strings.Contains(progress.String(), "FROM "+image) {
			t.Errorf("progress output does not show the build:\n%s", progress.String())
		}
		if _, err := cli.ImageInspect(ctx, child); err == nil {
			t.Errorf("failed build tagged %s", child)
		}
	})
}

func TestBuildRefusesMissingBaseImage(t *testing.T) {
	cli := dockerClient(t)
	proxy := staticProxy(t)
	base := testName(t, "missing") + ":none"
	_, err := Build(t.Context(), cli, Request{
		Conf:  DockerConf{From: base, Cmd: "./service"},
		Proxy: proxy,
		Dir:   t.TempDir(),
		Image: testName(t, "never-built"),
	})
	var be *BaseImageError
	if !errors.Is(err, ErrBaseImageNotFound) || !errors.As(err, &be) || be.Image != base {
		t.Fatalf("Build = %v, want a BaseImageError for %s", err, base)
	}
	want := "base image " + base + " not found locally (no registry is reachable); use FROM scratch with a static binary"
	if err.Error() != want {
		t.Fatalf("error %q\nwant %q", err, want)
	}
}
