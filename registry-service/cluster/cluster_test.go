package cluster

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/psk"
	"github.com/physarum-p2p/physarum/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		// etcd's gRPC keeps a few resolver goroutines process-wide.
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		// Two members in one process: etcd's peer transport (rafthttp)
		// leaves its keep-alive connection between them open for a moment
		// after both stopped, at both ends (seen in about one run in five).
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"),
	)
}

func testConfig(t *testing.T, name, pass string) Config {
	t.Helper()
	key, err := psk.Derive(pass)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Name: name, DataDir: t.TempDir(), IP: "127.0.0.1",
		ClientPort: freeport.T(t), PeerPort: freeport.T(t), PSK: key,
		UnsafeNoFsync: true, ReadyTimeout: 30 * time.Second,
	}
}

func TestCADerivationIsDeterministicPerPSK(t *testing.T) {
	k1, _ := psk.Derive("one")
	k2, _ := psk.Derive("two")
	_, _, a, err := deriveCA(k1)
	if err != nil {
		t.Fatal(err)
	}
	_, _, b, _ := deriveCA(k1)
	_, _, c, _ := deriveCA(k2)
	if !bytes.Equal(a, b) {
		t.Fatal("the same PSK gave two CA certificates: members could not trust each other")
	}
	if bytes.Equal(a, c) {
		t.Fatal("two PSKs gave the same CA")
	}
}

func TestJoinAsLearnerPromoteAndClientBeyondCap(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	a, err := StartNew(ctx, testConfig(t, "a", "net"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	bcfg := testConfig(t, "b", "net")
	resp, err := a.Admit(ctx, "b", registry.JoinRequest{PeerURLs: bcfg.PeerURLs(), ClientURLs: bcfg.ClientURLs()}, 2)
	if err != nil || resp.Client {
		t.Fatalf("admit b: %+v %v", resp, err)
	}
	b, err := Join(ctx, bcfg, resp.InitialCluster, resp.ClientURLs)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	eventually.Succeeds(t, 30*time.Second, func() error {
		ms, err := a.Members(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Role != registry.RoleVoter {
				return fmt.Errorf("member %s is a %s", m.Name, m.Role)
			}
		}
		if len(ms) != 2 {
			return fmt.Errorf("%d members", len(ms))
		}
		return nil
	})
	if _, err := a.Client().Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	got, err := b.Client().Get(ctx, "/k")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v" {
		t.Fatalf("read through b: %v %v", got, err)
	}
	// The first member serves the store through its in-process client
	// (no TLS and gRPC over loopback), and writes made that way replicate;
	// the joined one talks to the voters over the network.
	if a.KV() == a.Client() || b.KV() != b.Client() {
		t.Fatal("KV(): want the in-process client on the started member only")
	}
	if _, err := a.KV().Put(ctx, "/k2", "v2"); err != nil {
		t.Fatal(err)
	}
	eventually.Succeeds(t, 10*time.Second, func() error {
		got, err := b.KV().Get(ctx, "/k2")
		if err != nil || len(got.Kvs) != 1 {
			return fmt.Errorf("read /k2 through b: %v %v", got, err) //nolint:errorlint // err may be nil: then got says what is wrong
		}
		return nil
	})

	// The cap (2) is reached: a third joins as a client.
	ccfg := testConfig(t, "c", "net")
	resp, err = b.Admit(ctx, "c", registry.JoinRequest{PeerURLs: ccfg.PeerURLs()}, 2)
	if err != nil || !resp.Client || len(resp.ClientURLs) != 2 {
		t.Fatalf("admit c beyond the cap: %+v %v", resp, err)
	}
	c, err := Connect(ctx, ccfg, resp.ClientURLs)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.Client().Get(ctx, "/k"); err != nil || len(got.Kvs) != 1 {
		t.Fatalf("read through the client: %v %v", got, err)
	}
}

func TestWrongPSKCannotReachEtcd(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a, err := StartNew(ctx, testConfig(t, "a", "net"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	if _, err := Connect(cctx, testConfig(t, "x", "other net"), a.Config().ClientURLs()); err == nil {
		t.Fatal("a client with another PSK reached etcd")
	}
}
