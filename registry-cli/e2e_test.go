package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

// cliNet is a registry-service process and a way to run registry-cli
// against it, as a user would.
type cliNet struct {
	t    *testing.T
	cli  string
	boot string
	key  string
}

func startRegistry(t *testing.T, extra ...string) *cliNet {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test; skipped with -short")
	}
	svc := proctest.Build(t, "./registry-service", "./registry-cli")
	cli := proctest.Build(t, "./registry-cli")
	dir := t.TempDir()
	r := launch.Registry{
		Node:    launch.Node{PSK: p2ptest.DefaultPassphrase, AddrFile: filepath.Join(dir, "addr")},
		DataDir: filepath.Join(dir, "data"), UnsafeNoFsync: true, Extra: extra,
	}
	p := proctest.Start(t, "registry", svc, r.Args(), nil)
	return &cliNet{t: t, cli: cli, boot: p.Ready(launch.RegistryReady, time.Minute, r.AddrFile),
		key: filepath.Join(t.TempDir(), "cli.key")}
}

func (n *cliNet) run(args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	env := []string{"P2P_PSK=" + p2ptest.DefaultPassphrase, nodeflags.EnvBootstraps + "=" + n.boot}
	return proctest.Run(n.t, n.cli, append([]string{"-keyfile", n.key}, args...), env, time.Minute)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConfig = `{"NetworkSoftReq":{"RTT":5},"NetworkHardReq":{"RTT":10},"CpuReq":100,"MemoryReq":64,
"Exec":{"Command":"/bin/hello","Args":["-port","${SERVICE_PORT}"]}}`

func TestAddGetListDelete(t *testing.T) {
	n := startRegistry(t)
	cfg := writeFile(t, "svc.json", goodConfig)
	if out, errs, code := n.run("add", cfg, "hello"); code != 0 || !strings.Contains(out, "added service hello") {
		t.Fatalf("add: code %d\n%s%s", code, out, errs)
	}
	out, _, code := n.run("-json", "get", "hello")
	var info registry.ServiceInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Exec.Command != "/bin/hello" || info.NetworkHardReq.RTT != 10 {
		t.Fatalf("get: code %d, %s", code, out)
	}
	out, _, code = n.run("list")
	if code != 0 || !strings.Contains(out, "hello") || !strings.Contains(out, "10ms") {
		t.Fatalf("list: code %d\n%s", code, out)
	}
	if out, _, code := n.run("members"); code != 0 || !strings.Contains(out, "voter") {
		t.Fatalf("members: code %d\n%s", code, out)
	}
	if _, _, code := n.run("delete", "hello"); code != 0 {
		t.Fatalf("delete: code %d", code)
	}
	_, errs, code := n.run("get", "hello")
	if code != 1 || !strings.Contains(errs, `no service named "hello"`) {
		t.Fatalf("get after delete: code %d, %s", code, errs)
	}
}

func TestBadInputIsOneLineAndWritesNothing(t *testing.T) {
	n := startRegistry(t)
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"malformed JSON", []string{"add", writeFile(t, "c.json", `{"CpuReq":`), "svc"}, 1, "malformed JSON"},
		{"unknown field", []string{"add", writeFile(t, "c.json", `{"CpuRequest":1,"Exec":{"Command":"x"}}`), "svc"}, 1, "CpuRequest"},
		{"name too long", []string{"add", writeFile(t, "c.json", goodConfig), strings.Repeat("n", 64)}, 1, "service name"},
		{"ill-formed name", []string{"add", writeFile(t, "c.json", goodConfig), "Hello World"}, 1, "service name"},
		{"soft above hard", []string{"add", writeFile(t, "c.json", `{"NetworkSoftReq":{"RTT":50},"NetworkHardReq":{"RTT":10},"Exec":{"Command":"x"}}`), "svc"}, 1, "NetworkSoftReq.RTT"},
		{"missing config", []string{"add", filepath.Join(t.TempDir(), "nope.json"), "svc"}, 1, "no such file"},
		{"exec with an image name", []string{"add", writeFile(t, "c.json", goodConfig), "img", "svc"}, 2, "no image name"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"bad flag", []string{"-nope", "list"}, 2, "-nope"},
		{"extra argument", []string{"get", "a", "b"}, 2, "want 1 argument"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs, code := n.run(c.args...)
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, c.wantCode, errs)
			}
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "registry-cli: ") || !strings.Contains(last, c.wantMsg) {
				t.Fatalf("stderr %q: want one line naming %q", errs, c.wantMsg)
			}
		})
	}
	out, _, code := n.run("-json", "list")
	if code != 0 || strings.TrimSpace(out) != "{}" {
		t.Fatalf("bad input changed the registry: %s", out)
	}
}

func TestMissingPSKStopsAtOnce(t *testing.T) {
	cli := proctest.Build(t, "./registry-cli")
	start := time.Now()
	_, errs, code := proctest.Run(t, cli, []string{"-ephemeral", "-bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWLVwJAVcT5MhQwKbx8yibxxKZo1YZwqTvRuAG7W6JsBn1", "list"}, nil, 10*time.Second)
	if code != 2 || !strings.Contains(errs, "no PSK") || time.Since(start) > 2*time.Second {
		t.Fatalf("exit %d after %s: %s", code, time.Since(start), errs)
	}
}

func TestWrongPSKSaysSo(t *testing.T) {
	n := startRegistry(t)
	_, errs, code := proctest.Run(t, n.cli, []string{"-ephemeral", "-psk", "not the network's", "-bootstrap", n.boot, "-timeout", "20s", "list"}, nil, 30*time.Second)
	if code != 1 || !strings.Contains(errs, "no bootstrap reachable; check the PSK and address") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

func TestWriterNotOnTheAllowlistIsRefused(t *testing.T) {
	key := filepath.Join(t.TempDir(), "allowed.key")
	// Create the allowed CLI identity, and learn its peer ID.
	id := peerIDOfKey(t, key)
	n := startRegistry(t, "-writers", id)
	cfg := writeFile(t, "svc.json", goodConfig)
	_, errs, code := n.run("add", cfg, "hello")
	if code != 1 || !strings.Contains(errs, "allowlist") {
		t.Fatalf("unlisted writer: exit %d: %s", code, errs)
	}
	out, _, _ := n.run("-json", "list")
	if strings.TrimSpace(out) != "{}" {
		t.Fatalf("refused write changed the registry: %s", out)
	}
	n.key = key
	if _, errs, code := n.run("add", cfg, "hello"); code != 0 {
		t.Fatalf("allowed writer: exit %d: %s", code, errs)
	}
}
