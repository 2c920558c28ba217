package agent

import (
	"crypto/rand"
	"os"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/registry"
)

// TestRuntimeSpecEnvironmentAndCommand: a service's Environment reaches
// instances under both runtimes, Exec.Env wins over it for processes,
// and the instance contract's variables win over both; a Docker service's
// Command is the container's Cmd, split into words; a pinned instance's
// compute is a label, and only a pinned one has it.
func TestRuntimeSpecEnvironmentAndCommand(t *testing.T) {
	n := p2ptest.Start(t, p2ptest.Spec{})
	a := &Agent{cfg: Config{ProxyPath: "/opt/physarum/proxy", MaxRestarts: 2}, node: n.Node}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := ports{Service: 20001, Proxy: 20002, P2P: 20003, Metrics: 20004}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GREETING": "hello", "BOTH": "from Environment", instenv.ServicePort: "1", instenv.Service: "spoofed"}

	t.Run("docker", func(t *testing.T) {
		info := &registry.ServiceInfo{DockerHash: "sha256:abc", Command: "  serve --port  ${SERVICE_PORT} ", Environment: env}
		spec, err := a.runtimeSpec(registry.RuntimeDocker, startReq{id: "web-1", service: "web", compute: "site-a"}, info, p, key, "peer")
		if err != nil {
			t.Fatal(err)
		}
		if spec.Image != "sha256:abc" || !slices.Equal(spec.Command, []string{"serve", "--port", "${SERVICE_PORT}"}) {
			t.Fatalf("image %q, command %q; want the image and Command's words (expanded by the proxy)", spec.Image, spec.Command)
		}
		checkEnv(t, spec.Env, map[string]string{"GREETING": "hello", "BOTH": "from Environment", instenv.ServicePort: "20001", instenv.Service: "web"})
		if spec.Labels[labelCompute] != "site-a" || spec.Labels[labelOnDemand] != "false" {
			t.Fatalf("labels %v; want the compute and ondemand=false", spec.Labels)
		}
		info.Command = ""
		spec, err = a.runtimeSpec(registry.RuntimeDocker, startReq{id: "web-2", service: "web"}, info, p, key, "peer")
		if err != nil {
			t.Fatal(err)
		}
		if len(spec.Command) != 0 {
			t.Fatalf("command %q without a Command; want none (the image's CMD)", spec.Command)
		}
		if _, ok := spec.Labels[labelCompute]; ok {
			t.Fatalf("labels %v: a compute label on an instance that counts towards none", spec.Labels)
		}
	})

	t.Run("process", func(t *testing.T) {
		info := &registry.ServiceInfo{Command: "ignored for processes", Environment: env, Exec: &registry.ExecConf{
			Command: self, Args: []string{"-x"}, Env: map[string]string{"BOTH": "from Exec.Env on ${SERVICE_PORT}", instenv.ProxyPort: "1"},
		}}
		spec, err := a.runtimeSpec(registry.RuntimeProcess, startReq{id: "job-1", service: "job", onDemand: true}, info, p, key, "peer")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"/opt/physarum/proxy", "-instance", "--", self, "-x"}; !slices.Equal(spec.Command, want) {
			t.Fatalf("command %q, want %q", spec.Command, want)
		}
		checkEnv(t, spec.Env, map[string]string{
			"GREETING": "hello", "BOTH": "from Exec.Env on 20001",
			instenv.ServicePort: "20001", instenv.ProxyPort: "20002", instenv.Service: "job", instenv.InstanceID: "job-1",
		})
		if spec.Labels[labelOnDemand] != "true" {
			t.Fatalf("labels %v", spec.Labels)
		}
	})
}

func checkEnv(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
}

func TestNewIDAndChosenIDs(t *testing.T) {
	for _, service := range []string{"web", "my.svc", "a_b", "x23456789012345678901234567890123456789012345678901234567890123"[:63]} {
		id := newID(service)
		if err := validateID(id); err != nil {
			t.Errorf("newID(%q) = %q: %v", service, id, err)
		}
	}
	for _, c := range []struct {
		id string
		ok bool
	}{
		{"web-1", true}, {"0f8fad5b-d9cb-469f-a165-70867728950e", true},
		{"", false}, {"Web-1", false}, {"a.b", false}, {"a_b", false}, {"-a", false}, {"a/b", false},
	} {
		if err := validateID(c.id); (err == nil) != c.ok {
			t.Errorf("validateID(%q) = %v, want ok %v", c.id, err, c.ok)
		}
	}
}
