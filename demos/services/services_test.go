package services

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-cli/cli"
	"github.com/physarum-p2p/physarum/registry-cli/imagebuild"
)

// contents is what a config asks for, read only to check the values
// below. Whether a file is a config at all is registry-cli's to say:
// accept runs registry-cli add on it.
type contents struct {
	registry.ServiceInfo
	DockerConf json.RawMessage `json:"DockerConf"`
}

// requirements are what each demo service asks for: soft and hard RTT
// (ms), CPU (millicores), memory (MiB).
var requirements = map[string][4]int{
	"hello":      {20, 50, 100, 32},
	"calculator": {20, 50, 100, 32},
	"sensor":     {20, 100, 50, 16},
	"aggregator": {5, 10, 100, 32},
	"analytics":  {20, 50, 200, 64},
}

func load(t *testing.T, path string) contents {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c contents
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// accept runs registry-cli add -no-add on the config at path, as service
// name, and fails the test when registry-cli refuses it. A DockerConf
// config is built before -no-add is looked at, so the CLI is pointed at
// a Docker socket that does not exist: it has accepted the file, and its
// DockerConf, when all it then lacks is a daemon.
func accept(t *testing.T, path, name string, docker bool) {
	t.Helper()
	args := []string{"-ephemeral", "add", "-no-add", path, name}
	if docker {
		t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
		args = []string{"-ephemeral", "add", "-no-add", path, "physarum-demo/" + name, name}
	}
	var stdout, stderr bytes.Buffer
	env := cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	code := cli.Run(t.Context(), args, env)
	switch {
	case !docker && code == cli.ExitOK && strings.Contains(stdout.String(), "not registering "+name):
	case docker && code == cli.ExitFailure && strings.Contains(stderr.String(), "no Docker daemon answers"):
	default:
		t.Errorf("registry-cli %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
}

func checkRequirements(t *testing.T, path string, c contents, want [4]int) {
	t.Helper()
	got := [4]int{int(c.NetworkSoftReq.RTT), int(c.NetworkHardReq.RTT), c.CpuReq, c.MemoryReq}
	if got != want || c.NetworkSoftReq.RTT != float64(want[0]) || c.NetworkHardReq.RTT != float64(want[1]) {
		t.Errorf("%s: requirements %v (soft RTT, hard RTT, CPU, memory), want %v", path, got, want)
	}
}

func TestExecConfigs(t *testing.T) {
	bin := t.TempDir()
	for name, want := range requirements {
		path := name + ".exec.json"
		c := load(t, path)
		checkRequirements(t, path, c, want)
		if len(c.DockerConf) != 0 || c.Exec == nil {
			t.Fatalf("%s: want Exec and no DockerConf", path)
		}
		if c.Exec.Command != "${DEMO_BIN}/"+name || len(c.Exec.Args) != 0 || len(c.Exec.Env) != 0 {
			t.Errorf("%s: Exec %+v, want Command ${DEMO_BIN}/%s and nothing else", path, *c.Exec, name)
		}
		// What the launcher registers once it has put in the binaries'
		// directory.
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		filled := filepath.Join(t.TempDir(), path)
		if err := os.WriteFile(filled, bytes.ReplaceAll(b, []byte("${DEMO_BIN}"), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		accept(t, filled, name, false)
	}
}

func TestDockerConfigs(t *testing.T) {
	for name, want := range requirements {
		path := name + ".docker.json"
		c := load(t, path)
		checkRequirements(t, path, c, want)
		if c.Exec != nil {
			t.Fatalf("%s: want DockerConf and no Exec", path)
		}
		dc, err := imagebuild.ParseDockerConf(c.DockerConf)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if dc.From != "scratch" || len(dc.Copy) != 1 || dc.Copy[0] != [2]string{name, name} ||
			dc.Cmd != "/app/"+name || len(dc.Run) != 0 || dc.ProxyClientMode {
			t.Errorf("%s: DockerConf %+v", path, dc)
		}
		accept(t, path, name, true)
	}
}

// TestEveryFileIsKnown catches a config added, renamed or left behind
// without its service.
func TestEveryFileIsKnown(t *testing.T) {
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for name := range requirements {
		want = append(want, name+".docker.json", name+".exec.json")
		// The package whose binary `make build` names after the service.
		if _, err := os.Stat(filepath.Join("..", name, "main.go")); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
	}
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Errorf("configs %v, want %v", files, want)
	}
}
