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
	"github.com/physarum-p2p/physarum/registry-cli/imagebuild"
)

// config mirrors the file registry-cli add reads (registry-cli/cli's
// serviceConfig); unknown fields are refused, as registry-cli does.
type config struct {
	NetworkSoftReq registry.PerfInd   `json:"NetworkSoftReq"`
	NetworkHardReq registry.PerfInd   `json:"NetworkHardReq"`
	CpuReq         int                `json:"CpuReq"`
	MemoryReq      int                `json:"MemoryReq"`
	Exec           *registry.ExecConf `json:"Exec,omitempty"`
	DockerConf     json.RawMessage    `json:"DockerConf,omitempty"`
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

func load(t *testing.T, path string) config {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c config
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value", path)
	}
	return c
}

func (c config) info() registry.ServiceInfo {
	return registry.ServiceInfo{NetworkSoftReq: c.NetworkSoftReq, NetworkHardReq: c.NetworkHardReq,
		CpuReq: c.CpuReq, MemoryReq: c.MemoryReq, Exec: c.Exec}
}

func checkRequirements(t *testing.T, path string, c config, want [4]int) {
	t.Helper()
	got := [4]int{int(c.NetworkSoftReq.RTT), int(c.NetworkHardReq.RTT), c.CpuReq, c.MemoryReq}
	if got != want || c.NetworkSoftReq.RTT != float64(want[0]) || c.NetworkHardReq.RTT != float64(want[1]) {
		t.Errorf("%s: requirements %v (soft RTT, hard RTT, CPU, memory), want %v", path, got, want)
	}
}

func TestExecConfigs(t *testing.T) {
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
		c.Exec.Command = strings.ReplaceAll(c.Exec.Command, "${DEMO_BIN}", "/opt/physarum/bin")
		info := c.info()
		if err := info.Validate(); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		if !filepath.IsAbs(c.Exec.Command) {
			t.Errorf("%s: command %q is not absolute after substitution", path, c.Exec.Command)
		}
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
		info := c.info()
		info.DockerHash = "physarum-demo/" + name // set by registry-cli once built
		if err := info.Validate(); err != nil {
			t.Errorf("%s: %v", path, err)
		}
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
