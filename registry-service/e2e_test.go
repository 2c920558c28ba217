package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/launch"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// These tests run registry-service as separate processes with real etcd
// and real libp2p on loopback, and talk to them as a client node would.

type member struct {
	*proctest.Proc
	id      peer.ID
	addr    string
	dataDir string
}

type registryNet struct {
	t       *testing.T
	bin     string
	members []*member
}

func newRegistryNet(t *testing.T) *registryNet {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test; skipped with -short")
	}
	return &registryNet{t: t, bin: proctest.Build(t, "./registry-service")}
}

// start starts a registry-service; the first starts the cluster.
func (rn *registryNet) start(extra ...string) *member {
	t := rn.t
	t.Helper()
	dir := t.TempDir()
	name := fmt.Sprintf("registry%d", len(rn.members)+1)
	r := launch.Registry{
		Node: launch.Node{
			PSK: p2ptest.DefaultPassphrase, KeyFile: filepath.Join(dir, "key"),
			AddrFile: filepath.Join(dir, "addr"), LogLevel: "debug",
		},
		DataDir: filepath.Join(dir, "data"), UnsafeNoFsync: true, Extra: extra,
	}
	if len(rn.members) > 0 {
		r.Bootstrap = rn.members[0].addr // joins the cluster the first started
	}
	p := proctest.Start(t, name, rn.bin, r.Args(), []string{nodeflags.EnvFastTiming + "=1"})
	started := time.Now()
	addr := p.Ready(launch.RegistryReady, 60*time.Second, r.AddrFile)
	t.Logf("%s ready in %s", name, time.Since(started))
	info, err := nodeflags.ParseBootstraps([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{Proc: p, id: info[0].ID, addr: addr, dataDir: filepath.Join(dir, "data")}
	rn.members = append(rn.members, m)
	return m
}

// client starts a node in the network and returns a failover client.
func (rn *registryNet) client() (*p2ptest.Node, *registry.Client) {
	rn.t.Helper()
	info, _ := nodeflags.ParseBootstraps([]string{rn.members[0].addr})
	n := p2ptest.Start(rn.t, p2ptest.Spec{Bootstraps: info})
	if err := n.Bootstrapped(rn.t.Context()); err != nil {
		rn.t.Fatal(err)
	}
	c := registry.NewClient(n.Node, registry.Options{Timeout: 3 * time.Second})
	rn.t.Cleanup(c.Close)
	return n, c
}

// callAt sends one request to one registry member.
func callAt(t *testing.T, n *p2ptest.Node, m *member, req registry.Request) (*registry.Response, error) {
	t.Helper()
	info, _ := nodeflags.ParseBootstraps([]string{m.addr})
	if err := n.Host().Connect(t.Context(), info[0]); err != nil {
		return nil, err
	}
	var resp registry.Response
	err := wire.Call(t.Context(), n.Host(), m.id, registry.Protocol, req, &resp, wire.CallOptions{Timeout: 5 * time.Second})
	return &resp, err
}

func testService(i int) registry.ServiceInfo {
	return registry.ServiceInfo{
		Exec:           &registry.ExecConf{Command: "/bin/svc", Args: []string{strconv.Itoa(i)}},
		NetworkSoftReq: registry.PerfInd{RTT: 5}, NetworkHardReq: registry.PerfInd{RTT: 10},
		CpuReq: 100 + i, MemoryReq: 64,
	}
}

func waitMembers(t *testing.T, n *p2ptest.Node, at *member, voters, clients int) []registry.Member {
	t.Helper()
	var last []registry.Member
	eventually.Succeeds(t, 60*time.Second, func() error {
		resp, err := callAt(t, n, at, registry.Request{Op: registry.OpMembers})
		if err != nil {
			return err
		}
		last = resp.Members
		count := map[string]int{}
		for _, m := range resp.Members {
			count[m.Role]++
		}
		if count[registry.RoleVoter] != voters || count[registry.RoleClient] != clients || count[registry.RoleLearner] != 0 {
			return fmt.Errorf("members %v", count)
		}
		return nil
	})
	return last
}

func TestThreeMembersFormOneCluster(t *testing.T) {
	rn := newRegistryNet(t)
	for range 3 {
		rn.start()
	}
	n, _ := rn.client()
	waitMembers(t, n, rn.members[0], 3, 0)
	for i, m := range rn.members {
		name := fmt.Sprintf("svc-via-%d", i)
		if _, err := callAt(t, n, m, registry.Request{Op: registry.OpAdd, Name: name, Info: ptr(testService(i))}); err != nil {
			t.Fatalf("add through member %d: %v", i, err)
		}
	}
	for i, m := range rn.members {
		resp, err := callAt(t, n, m, registry.Request{Op: registry.OpList})
		if err != nil || len(resp.Services) != 3 {
			t.Fatalf("list through member %d: %d services, %v", i, len(resp.Services), err)
		}
		got, err := callAt(t, n, m, registry.Request{Op: registry.OpGet, Name: "svc-via-0"})
		if err != nil || got.Info.CpuReq != 100 {
			t.Fatalf("get through member %d: %+v %v", i, got.Info, err)
		}
	}
}

func TestKilledMemberLosesNoAcknowledgedWrite(t *testing.T) {
	rn := newRegistryNet(t)
	for range 3 {
		rn.start()
	}
	n, c := rn.client()
	waitMembers(t, n, rn.members[0], 3, 0)

	// Write continuously through the failover client while a member dies.
	var mu sync.Mutex
	var acked []string
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("w-%04d", i)
			if _, err := c.AddService(ctx, name, testService(i)); err == nil {
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
			}
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	eventually.Succeeds(t, 30*time.Second, func() error {
		if count() < 20 {
			return fmt.Errorf("%d writes", count())
		}
		return nil
	})
	victim := rn.members[1]
	victim.Kill()
	before := count()
	eventually.Succeeds(t, 30*time.Second, func() error {
		if count() < before+20 {
			return fmt.Errorf("%d writes since the kill", count()-before)
		}
		return nil
	})
	stop()
	wg.Wait()

	// get and list go on through the others, with every acknowledged write.
	svcs, err := c.ListServices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range acked {
		if _, ok := svcs[name]; !ok {
			t.Fatalf("acknowledged write %s lost (%d acknowledged, %d listed)", name, len(acked), len(svcs))
		}
	}
	if _, err := c.GetService(t.Context(), acked[len(acked)-1]); err != nil {
		t.Fatal(err)
	}
	// The member restarted from its data dir catches up.
	victim.Restart()
	victim.WaitOutput(launch.RegistryReady, 60*time.Second)
	if !strings.Contains(victim.Stdout(), "restarting etcd member from") {
		t.Fatalf("the member did not restart from its data dir:\n%s", victim.Stdout())
	}
	eventually.Succeeds(t, 30*time.Second, func() error {
		resp, err := callAt(t, n, victim, registry.Request{Op: registry.OpList})
		if err != nil {
			return err
		}
		if len(resp.Services) < len(acked) {
			return fmt.Errorf("restarted member lists %d of %d", len(resp.Services), len(acked))
		}
		return nil
	})
	t.Logf("%d writes acknowledged, %d after the kill; none lost", len(acked), len(acked)-before)
}

func TestVoterCapHoldsAndClientsServe(t *testing.T) {
	rn := newRegistryNet(t)
	for range 5 {
		rn.start("-voters", "3")
	}
	n, _ := rn.client()
	waitMembers(t, n, rn.members[0], 3, 2)
	for i, m := range rn.members[3:] {
		if !strings.Contains(m.Stdout(), "registry ready (client)") {
			t.Fatalf("member %d is not a client:\n%s", i+4, m.Stdout())
		}
		name := fmt.Sprintf("via-client-%d", i)
		if _, err := callAt(t, n, m, registry.Request{Op: registry.OpAdd, Name: name, Info: ptr(testService(i))}); err != nil {
			t.Fatalf("add through client member: %v", err)
		}
		if _, err := callAt(t, n, rn.members[0], registry.Request{Op: registry.OpGet, Name: name}); err != nil {
			t.Fatalf("read back through a voter: %v", err)
		}
	}
}

func TestWritersAllowlist(t *testing.T) {
	rn := newRegistryNet(t)
	allowed := p2ptest.Start(t, p2ptest.Spec{})
	rn.start("-writers", allowed.ID().String())
	n, _ := rn.client()
	_, err := callAt(t, n, rn.members[0], registry.Request{Op: registry.OpAdd, Name: "x", Info: ptr(testService(1))})
	if !errors.Is(err, registry.ErrForbidden) || !strings.Contains(err.Error(), "allowlist") {
		t.Fatalf("add by a peer not on the allowlist: %v", err)
	}
	resp, err := callAt(t, n, rn.members[0], registry.Request{Op: registry.OpList})
	if err != nil || len(resp.Services) != 0 {
		t.Fatalf("refused write changed the registry: %v %v", resp.Services, err)
	}
	info, _ := nodeflags.ParseBootstraps([]string{rn.members[0].addr})
	if err := allowed.Host().Connect(t.Context(), info[0]); err != nil {
		t.Fatal(err)
	}
	err = wire.Call(t.Context(), allowed.Host(), rn.members[0].id, registry.Protocol,
		registry.Request{Op: registry.OpAdd, Name: "x", Info: ptr(testService(1))}, nil, wire.CallOptions{})
	if err != nil {
		t.Fatalf("allowed writer refused: %v", err)
	}
}

func TestBadRequestsOnTheWireChangeNothing(t *testing.T) {
	rn := newRegistryNet(t)
	m := rn.start()
	n, _ := rn.client()
	bad := []registry.Request{
		{Op: registry.OpAdd, Name: strings.Repeat("a", 64), Info: ptr(testService(1))},
		{Op: registry.OpAdd, Name: "Bad Name", Info: ptr(testService(1))},
		{Op: registry.OpAdd, Name: "soft-above-hard", Info: &registry.ServiceInfo{
			Exec: &registry.ExecConf{Command: "x"}, NetworkSoftReq: registry.PerfInd{RTT: 20}, NetworkHardReq: registry.PerfInd{RTT: 10}}},
		{Op: registry.OpAdd, Name: "in-seconds", Info: &registry.ServiceInfo{
			Exec: &registry.ExecConf{Command: "x"}, NetworkHardReq: registry.PerfInd{RTT: 5e9}}},
		{Op: registry.OpAdd, Name: "no-info"},
		{Op: "frobnicate"},
	}
	for _, req := range bad {
		_, err := callAt(t, n, m, req)
		if wire.CodeOf(err) != wire.CodeBadRequest {
			t.Errorf("%s %q: %v, want bad_request", req.Op, req.Name, err)
		}
	}
	// Raw frames: oversized and truncated.
	for _, raw := range [][]byte{header(1 << 30), append(header(100), `{"Op":"add","Na`...)} {
		st, err := n.Host().NewStream(t.Context(), m.id, registry.Protocol)
		if err != nil {
			t.Fatal(err)
		}
		_ = st.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = st.Write(raw)
		_ = st.CloseWrite()
		b, err := wire.ReadFrame(st, wire.DefaultMaxFrame)
		if err != nil {
			t.Fatalf("no answer to a bad frame: %v", err)
		}
		if err := wire.DecodeResponse(b, nil); wire.CodeOf(err) == "" {
			t.Fatalf("bad frame answered without an error: %s", b)
		}
		st.Close()
	}
	resp, err := callAt(t, n, m, registry.Request{Op: registry.OpList})
	if err != nil || len(resp.Services) != 0 {
		t.Fatalf("bad input changed the registry: %v %v", resp.Services, err)
	}
	if !m.Running() {
		t.Fatal("registry-service died on bad input")
	}
}

func header(n uint32) []byte {
	b := []byte{wire.Version, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], n)
	return b
}

func ptr[T any](v T) *T { return &v }

func TestMemberThatLostItsDataDirRejoinsAfresh(t *testing.T) {
	rn := newRegistryNet(t)
	for range 3 {
		rn.start()
	}
	n, c := rn.client()
	waitMembers(t, n, rn.members[0], 3, 0)
	if _, err := c.AddService(t.Context(), "before", testService(1)); err != nil {
		t.Fatal(err)
	}
	lost := rn.members[2]
	lost.Kill()
	if err := os.RemoveAll(lost.dataDir); err != nil {
		t.Fatal(err)
	}
	lost.Restart() // same key, so the same member name
	lost.WaitOutput(launch.RegistryReady, 90*time.Second)
	if !strings.Contains(lost.Stdout(), "joining the registry cluster") {
		t.Fatalf("did not rejoin:\n%s", lost.Stdout())
	}
	members := waitMembers(t, n, rn.members[0], 3, 0)
	names := map[string]int{}
	for _, m := range members {
		names[m.Name]++
	}
	if names[lost.id.String()] != 1 {
		t.Fatalf("members after the rejoin: %+v", members)
	}
	// It has the data again, written before and after.
	if _, err := c.AddService(t.Context(), "after", testService(2)); err != nil {
		t.Fatal(err)
	}
	eventually.Succeeds(t, 30*time.Second, func() error {
		resp, err := callAt(t, n, lost, registry.Request{Op: registry.OpList})
		if err != nil {
			return err
		}
		if len(resp.Services) != 2 {
			return fmt.Errorf("rejoined member lists %d services", len(resp.Services))
		}
		return nil
	})
}
