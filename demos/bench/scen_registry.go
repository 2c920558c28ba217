package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// runRegistry measures the registry over libp2p from a warm client node
// in this process against an etcd client talking to the same embedded
// etcd directly (TLS, with the member's certificate), in the same run: get
// and add latency and throughput; then registry-cli calls as a user makes
// them, and registry-service's memory.
func runRegistry(ctx context.Context, r *run) error {
	n, err := r.s.newNetwork(r, "registry", true)
	if err != nil {
		return err
	}
	defer n.close()
	r.sc.Setup = "1 registry-service (embedded etcd, fsync on), a client node in this process bootstrapped to it, " +
		"and an etcd v3 client on the same etcd (https://127.0.0.1, the member's TLS files); " + n.timing() + "."
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	if err := n.addProcessService(ctx, "hello", 0, 0); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	rss, _, err := memOf(n.reg.Pid())
	if err != nil {
		return err
	}
	r.fig(Figure{Name: "registry-service RSS (etcd embedded), idle", Value: mb(rss), Unit: "MB",
		Target: lt(60, "< 60 MB with etcd"), Anchor: "PhysarumSM 29 MB + etcd 25 MB"})

	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	etcd, err := etcdClient(n)
	if err != nil {
		return err
	}
	defer etcd.Close()
	info, err := c.reg.GetService(ctx, "hello")
	if err != nil {
		return err
	}
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return err
	}
	const key = "/physarum/services/hello"
	regGet := func() (time.Duration, error) {
		t0 := time.Now()
		_, err := c.reg.GetService(ctx, "hello")
		return time.Since(t0), err
	}
	etcdGet := func() (time.Duration, error) {
		t0 := time.Now()
		resp, err := etcd.Get(ctx, key)
		if err == nil && len(resp.Kvs) != 1 {
			err = fmt.Errorf("etcd get %s: %d keys", key, len(resp.Kvs))
		}
		return time.Since(t0), err
	}
	var seq atomic.Int64
	regAdd := func() (time.Duration, error) {
		name := fmt.Sprintf("bench-add-%d", seq.Add(1))
		t0 := time.Now()
		_, err := c.reg.AddService(ctx, name, info)
		return time.Since(t0), err
	}
	etcdAdd := func() (time.Duration, error) {
		k := fmt.Sprintf("/physarum/services/bench-direct-%d", seq.Add(1))
		t0 := time.Now()
		_, err := etcd.Put(ctx, k, string(infoJSON))
		return time.Since(t0), err
	}
	for range 100 { // warm-up
		if _, err := regGet(); err != nil {
			return fmt.Errorf("registry get: %w", err)
		}
		if _, err := etcdGet(); err != nil {
			return err
		}
	}

	pairs := func(what string, count int, a, b func() (time.Duration, error)) (dist, dist, error) {
		r.say("%s latency: %d each, alternating registry (libp2p) and etcd direct", what, count)
		var da, db dist
		for range count {
			ta, err := a()
			if err != nil {
				return nil, nil, fmt.Errorf("registry %s: %w", what, err)
			}
			tb, err := b()
			if err != nil {
				return nil, nil, fmt.Errorf("etcd %s: %w", what, err)
			}
			da, db = append(da, ta), append(db, tb)
		}
		return da, db, nil
	}
	rg, eg, err := pairs("get", r.pick(2000, 300), regGet, etcdGet)
	if err != nil {
		return err
	}
	r.fig(Figure{Name: "registry get over libp2p, warm client, p50", Value: msec(rg.p50()), Unit: "ms", Samples: len(rg),
		Target: lt(1, "< 1 ms median"), Baseline: &Baseline{Name: "etcd get direct p50", Value: msec(eg.p50()), Unit: "ms"},
		Anchor: "PhysarumSM ≈ 2 ms p50"})
	r.fig(Figure{Name: "registry get over libp2p, warm client, p99", Value: msec(rg.p99()), Unit: "ms", Samples: len(rg),
		Target: lt(3, "< 3 ms p99"), Baseline: &Baseline{Name: "etcd get direct p99", Value: msec(eg.p99()), Unit: "ms"}})
	ra, ea, err := pairs("add", r.pick(300, 50), regAdd, etcdAdd)
	if err != nil {
		return err
	}
	r.fig(Figure{Name: "registry add over libp2p, warm client, p50", Value: msec(ra.p50()), Unit: "ms", Samples: len(ra),
		Target: lt(10, "< 10 ms median"), Baseline: &Baseline{Name: "etcd put direct p50", Value: msec(ea.p50()), Unit: "ms"}})
	r.fig(Figure{Name: "registry add over libp2p, warm client, p99", Value: msec(ra.p99()), Unit: "ms", Samples: len(ra),
		Baseline: &Baseline{Name: "etcd put direct p99", Value: msec(ea.p99()), Unit: "ms"}})

	rounds := r.pick(8, 2)
	for _, op := range []struct {
		name string
		a, b func() (time.Duration, error)
	}{{"get", regGet, etcdGet}, {"add", regAdd, etcdAdd}} {
		const clients = 8
		r.say("%s throughput, %d clients: %d rounds of 250 ms per way", op.name, clients, rounds)
		var pa, pb phases
		for range rounds {
			pa.phase(ctx, clients, 250*time.Millisecond, op.a)
			pb.phase(ctx, clients, 250*time.Millisecond, op.b)
		}
		checkPhases(r, "registry "+op.name, &pa)
		checkPhases(r, "etcd "+op.name, &pb)
		r.fig(Figure{Name: fmt.Sprintf("registry %s throughput, %d clients on one node", op.name, clients), Value: pa.rate(), Unit: "ops/s",
			Samples: len(pa.lat), Baseline: &Baseline{Name: "etcd direct", Value: pb.rate(), Unit: "ops/s"}})
	}
	if rss, hwm, err := memOf(n.reg.Pid()); err == nil {
		r.fig(Figure{Name: "registry-service RSS after the load", Value: mb(rss), Unit: "MB"})
		r.fig(Figure{Name: "registry-service peak RSS (VmHWM)", Value: mb(hwm), Unit: "MB"})
	}

	// registry-cli as a user runs it: a new process that joins the
	// network, asks, prints and exits.
	calls := r.pick(20, 5)
	r.say("registry-cli: %d calls of 'registry-cli get hello', process start to exit", calls)
	cliRun := func(args ...string) (time.Duration, error) {
		cmd := exec.CommandContext(ctx, n.bin("registry-cli"), append([]string{"-keyfile", filepath.Join(n.dir, "cli.key")}, args...)...)
		cmd.Env = append(os.Environ(), n.env...)
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(t0)
		if err != nil && args[0] != "-help" {
			return took, fmt.Errorf("registry-cli %v: %w: %s", args, err, out)
		}
		return took, nil
	}
	var cli, help dist
	for range calls {
		t, err := cliRun("get", "hello")
		if err != nil {
			return err
		}
		cli = append(cli, t)
		if t, err = cliRun("-help"); err != nil {
			return err
		}
		help = append(help, t)
	}
	r.fig(Figure{Name: "one registry-cli call (get hello), process start to exit, p50", Value: msec(cli.p50()), Unit: "ms",
		Samples: len(cli), Target: lt(60, "< 60 ms median"),
		Baseline: &Baseline{Name: "the same get from a warm client, p50", Value: msec(rg.p50()), Unit: "ms"},
		Anchor:   "PhysarumSM ≈ 205 ms; Nomad CLI 56 ms"})
	r.fig(Figure{Name: "registry-cli -help, process start to exit (no network: the floor of any call), p50",
		Value: msec(help.p50()), Unit: "ms", Samples: len(help)})
	r.notef("Get and add latencies alternate one registry call and one etcd call. The registry client opens a new libp2p " +
		"stream per call on a kept connection. Adds write distinct service names; the direct puts write the same JSON under " +
		"other keys of the same prefix.")
	return nil
}

// etcdClient connects to the network's embedded etcd with the member's
// TLS files (its certificate is valid as a client certificate too).
func etcdClient(n *network) (*clientv3.Client, error) {
	dir := filepath.Join(n.regData, "tls")
	tlsInfo := transport.TLSInfo{
		CertFile:      filepath.Join(dir, "member.crt"),
		KeyFile:       filepath.Join(dir, "member.key"),
		TrustedCAFile: filepath.Join(dir, "ca.crt"),
	}
	tlsCfg, err := tlsInfo.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd client TLS: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{fmt.Sprintf("https://127.0.0.1:%d", n.etcdPort)},
		TLS:         tlsCfg,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}
