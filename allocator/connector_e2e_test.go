package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

// An allocator's -connector-listen serves seed 001's connector protocol
// for its node alone: a scale through it is a desired count on the
// compute named after the allocator, so every instance lands on that
// node (not on the other allocator), and its status reports them as
// running_resources.
func TestConnectorScalesAndReportsThisNodeAlone(t *testing.T) {
	n := startNet(t)
	port := strconv.Itoa(freeport.T(t))
	edge := n.allocator("edge", "-connector-listen", "127.0.0.1:"+port)
	base := "http://127.0.0.1:" + port
	if out := edge.Stdout(); !strings.Contains(out, "connector listening on "+base) {
		t.Fatalf("no connector line with %s:\n%s", base, out)
	}
	n.allocator("other")
	n.addService("hello")

	if code, body := send(t, http.MethodPost, base+"/service/hello/scale", `{"number": "2"}`); code != http.StatusOK {
		t.Fatalf("scale through the connector: %d %s", code, body)
	}
	var st registry.ServiceStatus
	eventually.Succeeds(t, 30*time.Second, func() error {
		code, body := send(t, http.MethodGet, base+"/service/hello/status", "")
		if code != http.StatusOK {
			return fmt.Errorf("status: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			return err
		}
		if st.RunningResources != 2 {
			return fmt.Errorf("running_resources %d: %s", st.RunningResources, body)
		}
		return nil
	})
	var nodes []nodeView
	n.cliJSON(&nodes, "nodes")
	var edgeID string
	for _, nv := range nodes {
		if nv.Name == "edge" {
			edgeID = nv.PeerID
		}
	}
	var insts []registry.Instance
	n.cliJSON(&insts, "instances", "hello")
	if len(insts) != 2 {
		t.Fatalf("instances %+v; want 2", insts)
	}
	for _, in := range insts {
		if in.Node != edgeID || in.Compute != "edge" {
			t.Fatalf("instance %s on %s for compute %q; want edge's node (%s) and compute", in.ID, in.Node, in.Compute, edgeID)
		}
	}
	// Service definitions pass through to the registry.
	if code, body := send(t, http.MethodGet, base+"/service/hello", ""); code != http.StatusOK || !strings.Contains(body, `"name":"hello"`) {
		t.Fatalf("GET /service/hello through the connector: %d %s", code, body)
	}
	// Stopping the allocator stops the connector with it.
	if code := edge.Stop(30 * time.Second); code != 0 {
		t.Fatalf("allocator exited %d on SIGTERM", code)
	}
	if _, err := http.Get(base + "/service"); err == nil {
		t.Fatal("the connector still answers after its allocator stopped")
	}
}

// A -connector-listen port that cannot be bound stops the allocator at
// start: exit 1 and one line naming the flag.
func TestConnectorPortTakenExits1(t *testing.T) {
	n := startNet(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	_, stderr, code := proctest.Run(t, n.bins["allocator"], n.allocatorArgs("busy", "-connector-listen", addr), n.env, time.Minute)
	lines := launch.LastLines(stderr, 1)
	if code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "allocator: -connector-listen "+addr+": ") ||
		!strings.Contains(lines[0], "address already in use") {
		t.Fatalf("exit %d, last line %q; want exit 1 and the flag, the address and why", code, lines)
	}
}

// send makes a request with a JSON body (none when body is "").
func send(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = bytes.NewBufferString(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
