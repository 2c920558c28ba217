package e2e

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

var binaries = []string{"./registry-service", "./allocator", "./proxy", "./registry-cli", "./demos/hello"}

// network is a user's network of processes on loopback.
type network struct {
	t    *testing.T
	bin  map[string]string
	env  []string
	boot string
	reg  *proctest.Proc
	// api is the HTTP API of the registry-service started last.
	api string
}

func newNetwork(t *testing.T) *network {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	proctest.Build(t, binaries...)
	n := &network{t: t, bin: map[string]string{}}
	for _, b := range binaries {
		n.bin[filepath.Base(b)] = proctest.Build(t, b)
	}
	n.env = []string{"P2P_PSK=" + p2ptest.DefaultPassphrase, nodeflags.EnvFastTiming + "=1"}
	return n
}

// registry starts the first registry-service, whose address all others
// bootstrap from.
func (n *network) registry() *proctest.Proc {
	n.t.Helper()
	dir := n.t.TempDir()
	r := launch.Registry{
		// A fixed port, so that a restart keeps the address the others bootstrap from.
		Node:    launch.Node{KeyFile: filepath.Join(dir, "key"), Port: freeport.T(n.t), AddrFile: filepath.Join(dir, "addr")},
		DataDir: filepath.Join(dir, "data"), UnsafeNoFsync: true,
	}
	n.reg = proctest.Start(n.t, "registry", n.bin["registry-service"], r.Args(), n.env)
	n.api = r.APIURL()
	n.boot = n.reg.Ready(launch.RegistryReady, time.Minute, r.AddrFile)
	n.env = append(n.env, nodeflags.EnvBootstraps+"="+n.boot)
	return n.reg
}

// allocator starts a process-runtime allocator; with opts, those of its
// settings that the test sets (its identity and data dir are the test's).
func (n *network) allocator(name string, opts ...launch.Allocator) *proctest.Proc {
	n.t.Helper()
	dir := n.t.TempDir()
	a := launch.Allocator{Runtime: "process", LeaseTTL: 3 * time.Second}
	if len(opts) > 0 {
		a = opts[0]
		a.Runtime, a.LeaseTTL = cmp.Or(a.Runtime, "process"), cmp.Or(a.LeaseTTL, 3*time.Second)
	}
	a.Node.KeyFile, a.DataDir = filepath.Join(dir, "key"), filepath.Join(dir, "data")
	p := proctest.Start(n.t, name, n.bin["allocator"], a.Args(), n.env)
	p.WaitOutput(launch.AllocatorReady, 30*time.Second)
	return p
}

// proxy starts a client proxy on a fixed port (so a restart keeps it).
func (n *network) proxy() (*proctest.Proc, string) {
	n.t.Helper()
	port := freeport.T(n.t)
	p := proctest.Start(n.t, "proxy", n.bin["proxy"], launch.ClientProxy{
		Node: launch.Node{KeyFile: filepath.Join(n.t.TempDir(), "key")}, HTTPPort: port,
	}.Args(), n.env)
	p.WaitOutput(launch.ProxyReady, 30*time.Second)
	return p, "http://127.0.0.1:" + strconv.Itoa(port)
}

func (n *network) cli(args ...string) (string, string, int) {
	n.t.Helper()
	return proctest.Run(n.t, n.bin["registry-cli"], append([]string{"-ephemeral"}, args...), n.env, time.Minute)
}

func (n *network) mustCLI(args ...string) string {
	n.t.Helper()
	out, errs, code := n.cli(args...)
	if code != 0 {
		n.t.Fatalf("registry-cli %v: exit %d: %s", args, code, errs)
	}
	return out
}

// addHello registers the hello demo as a process service.
func (n *network) addHello() {
	n.t.Helper()
	cfg := fmt.Sprintf(`{"NetworkSoftReq":{"RTT":20},"NetworkHardReq":{"RTT":50},"CpuReq":100,"MemoryReq":32,"Exec":{"Command":%q}}`, n.bin["hello"])
	path := filepath.Join(n.t.TempDir(), "hello.json")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		n.t.Fatal(err)
	}
	n.mustCLI("add", path, "hello")
}

func (n *network) instances(service string) []registry.Instance {
	n.t.Helper()
	var out []registry.Instance
	if err := json.Unmarshal([]byte(n.mustCLI("-json", "instances", service)), &out); err != nil {
		n.t.Fatal(err)
	}
	return out
}

// hello asks the client proxy for hello until it answers, within timeout,
// and returns the answer.
func hello(t *testing.T, base string, timeout time.Duration) string {
	t.Helper()
	var body string
	eventually.Succeeds(t, timeout, func() error {
		resp, err := http.Get(base + "/hello/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "hello from") {
			return fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		body = string(b)
		return nil
	})
	return body
}

// pidsWithEnv lists live processes whose environment holds kv.
func pidsWithEnv(kv string) []int { return launch.PIDsWithEnv(kv) }
