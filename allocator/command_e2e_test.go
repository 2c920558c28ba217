package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/physarum-p2p/physarum/registry"
)

// addExec registers a process service from its Exec part.
func (n *world) addExec(name, exec string) {
	n.t.Helper()
	path := filepath.Join(n.t.TempDir(), name+".json")
	if err := os.WriteFile(path, []byte(`{"CpuReq":100,"MemoryReq":16,"Exec":`+exec+`}`), 0o644); err != nil {
		n.t.Fatal(err)
	}
	n.cli("add", path, name)
}

// pyServer answers every GET with a fixed body, on SERVICE_PORT.
const pyServer = `import http.server as h, os
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello from python")
    def log_message(self, *a): pass
h.HTTPServer(("127.0.0.1", int(os.environ["SERVICE_PORT"])), H).serve_forever()`

// A process service whose Command is a bare name (python3) is found on the
// allocator's PATH and answers through a client proxy.
func TestBareCommandRunsAndAnswersThroughAClientProxy(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 on this machine's PATH: nothing to find by its bare name")
	}
	n := startNet(t)
	n.allocator("alloc")
	n.addExec("py", fmt.Sprintf(`{"Command":"python3","Args":["-c",%q]}`, pyServer))
	base := n.proxy()
	if code, body := get(t, base+"/py/"); code != 200 || body != "hello from python" {
		t.Fatalf("GET /py/: %d %s", code, body)
	}
}

// A command that exists nowhere fails with that reason, and 20 requests
// for it create at most one failed instance per node within the backoff.
func TestMissingCommandFailsOnceWithItsReason(t *testing.T) {
	n := startNet(t)
	n.allocator("alloc-a")
	n.allocator("alloc-b")
	n.addExec("ghost", `{"Command":"no-such-command-physarum"}`)
	base := n.proxy()
	var wg sync.WaitGroup
	bodies := make([]string, 20)
	codes := make([]int, 20)
	for i := range 20 {
		wg.Go(func() {
			resp, err := http.Get(base + "/ghost/")
			if err != nil {
				bodies[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			codes[i], bodies[i] = resp.StatusCode, string(b)
		})
		if i%5 == 4 {
			wg.Wait() // in waves: concurrent ones share an allocation
		}
	}
	wg.Wait()
	for i := range 20 {
		if codes[i] != 503 || !strings.Contains(bodies[i], "no-such-command-physarum") {
			t.Fatalf("request %d: %d %s; want 503 naming the missing command", i, codes[i], bodies[i])
		}
	}
	if !strings.Contains(bodies[19], "not trying again here") {
		t.Errorf("the last answer does not say the nodes back off: %s", bodies[19])
	}
	var insts []registry.Instance
	n.cliJSON(&insts, "instances", "ghost")
	perNode := map[string]int{}
	for _, in := range insts {
		if in.State != registry.StateFailed {
			t.Errorf("instance %s is %s, want failed", in.ID, in.State)
		}
		perNode[in.Node]++
	}
	for node, c := range perNode {
		if c > 1 {
			t.Errorf("node %s has %d failed instances of ghost, want at most 1 within its backoff", node, c)
		}
	}
	t.Logf("failed instances per node %v; last answer: %s", perNode, bodies[19])
}
