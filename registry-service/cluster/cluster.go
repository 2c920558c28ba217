// Package cluster runs registry-service's embedded etcd member: starting a
// new cluster, joining an existing one as a learner that promotes itself
// once caught up, restarting from a data directory, or running as a client
// of the cluster when the voter cap is reached. It also admits joiners on
// the serving side, one membership change at a time.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/pnet"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// Config describes the local member.
type Config struct {
	// Name is the member's name: its peer ID.
	Name string
	// DataDir holds etcd's data (DataDir/etcd) and TLS files (DataDir/tls).
	DataDir string
	// IP is the address etcd listens on and advertises.
	IP string
	// ClientPort and PeerPort are etcd's ports.
	ClientPort, PeerPort int
	// PSK is the network key; etcd's TLS CA is derived from it.
	PSK pnet.PSK
	// ReadyTimeout bounds waiting for etcd to be ready (default 60s).
	ReadyTimeout time.Duration
	// UnsafeNoFsync skips fsync (tests only: loses data on power loss).
	UnsafeNoFsync bool
	// Logger receives etcd's logs and ours.
	Logger *slog.Logger
}

// Validate checks the config before anything starts.
func (c *Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("cluster: no member name")
	case c.DataDir == "":
		return errors.New("-data-dir: empty")
	case net.ParseIP(c.IP) == nil:
		return fmt.Errorf("-etcd-ip %q: not an IP address", c.IP)
	case c.ClientPort <= 0 || c.ClientPort > 65535:
		return fmt.Errorf("-etcd-client-port %d: not a port", c.ClientPort)
	case c.PeerPort <= 0 || c.PeerPort > 65535:
		return fmt.Errorf("-etcd-peer-port %d: not a port", c.PeerPort)
	case c.ClientPort == c.PeerPort:
		return fmt.Errorf("-etcd-client-port and -etcd-peer-port are both %d", c.PeerPort)
	case len(c.PSK) == 0:
		return errors.New("cluster: no PSK")
	}
	return nil
}

func (c Config) peerURL() string {
	return (&url.URL{Scheme: "https", Host: net.JoinHostPort(c.IP, strconv.Itoa(c.PeerPort))}).String()
}

func (c Config) clientURL() string {
	return (&url.URL{Scheme: "https", Host: net.JoinHostPort(c.IP, strconv.Itoa(c.ClientPort))}).String()
}

// PeerURLs are the member's etcd peer URLs.
func (c Config) PeerURLs() []string { return []string{c.peerURL()} }

// ClientURLs are the member's etcd client URLs.
func (c Config) ClientURLs() []string { return []string{c.clientURL()} }

// HasData reports whether DataDir holds an etcd member's state, i.e.
// whether to restart rather than create or join.
func HasData(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "etcd", "member"))
	return err == nil
}

// clusterToken is etcd's initial-cluster-token for every Physarum cluster;
// the PSK-derived TLS already keeps networks apart.
const clusterToken = "physarum"

// Member is a running registry-service's view of the cluster: an embedded
// etcd member (voter or learner), or only a client (beyond the voter cap).
type Member struct {
	cfg  Config
	log  *slog.Logger
	etcd *embed.Etcd // nil for a client
	cli  *clientv3.Client
	// local calls the member in this process directly, without TLS and
	// gRPC over loopback (a third of a registry get): set on members
	// that serve their own reads (started or restarted, not joined).
	local *clientv3.Client
	tls   transport.TLSInfo

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	// quiet demotes etcd's logs once we are stopping it.
	quiet *atomic.Bool
}

// StartNew starts the first member of a new cluster.
func StartNew(ctx context.Context, cfg Config) (*Member, error) {
	return start(ctx, cfg, embed.ClusterStateFlagNew, cfg.Name+"="+cfg.peerURL())
}

// Restart starts the member from the state in its data directory.
func Restart(ctx context.Context, cfg Config) (*Member, error) {
	// With a data dir, etcd ignores the initial cluster; it must still parse.
	return start(ctx, cfg, embed.ClusterStateFlagExisting, cfg.Name+"="+cfg.peerURL())
}

// Join starts the member as a learner of the cluster an existing member
// admitted it to (see Admit), and promotes it to voter once it has caught
// up.
// A learner serves no client requests, so until it is promoted its client
// talks to the voters at clusterURLs.
func Join(ctx context.Context, cfg Config, initialCluster string, clusterURLs []string) (*Member, error) {
	var voters []string
	for _, u := range clusterURLs {
		if u != cfg.clientURL() {
			voters = append(voters, u)
		}
	}
	if len(voters) == 0 {
		return nil, errors.New("join: no voting member's client URL to talk to")
	}
	m, err := startWithEndpoints(ctx, cfg, embed.ClusterStateFlagExisting, initialCluster, voters)
	if err != nil {
		return nil, err
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.promoteSelf(m.ctx)
	}()
	return m, nil
}

// Connect runs as a client of the cluster at endpoints, without a local
// member.
func Connect(ctx context.Context, cfg Config, endpoints []string) (*Member, error) {
	info, err := writeTLS(filepath.Join(cfg.DataDir, "tls"), cfg.PSK, cfg.Name, nil)
	if err != nil {
		return nil, err
	}
	m := newMember(cfg, nil, info, new(atomic.Bool))
	if err := m.connect(ctx, endpoints); err != nil {
		return nil, err
	}
	return m, nil
}

func newMember(cfg Config, e *embed.Etcd, info transport.TLSInfo, quiet *atomic.Bool) *Member {
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Member{cfg: cfg, log: cfg.Logger, etcd: e, tls: info, ctx: ctx, cancel: cancel, quiet: quiet}
}

func start(ctx context.Context, cfg Config, state, initialCluster string) (*Member, error) {
	return startWithEndpoints(ctx, cfg, state, initialCluster, cfg.ClientURLs())
}

func startWithEndpoints(ctx context.Context, cfg Config, state, initialCluster string, endpoints []string) (*Member, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	info, err := writeTLS(filepath.Join(cfg.DataDir, "tls"), cfg.PSK, cfg.Name, []net.IP{net.ParseIP(cfg.IP)})
	if err != nil {
		return nil, err
	}
	quiet := new(atomic.Bool)
	ec, err := embedConfig(cfg, info, state, initialCluster, quiet)
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		quiet.Store(true)
		stopEtcd(e)
		return nil, fmt.Errorf("start etcd: %w", err)
	case <-time.After(cfg.ReadyTimeout):
		quiet.Store(true)
		stopEtcd(e)
		return nil, fmt.Errorf("start etcd: not ready within %s (is a quorum of members reachable?)", cfg.ReadyTimeout)
	case <-ctx.Done():
		quiet.Store(true)
		stopEtcd(e)
		return nil, fmt.Errorf("start etcd: %w", ctx.Err())
	}
	m := newMember(cfg, e, info, quiet)
	if err := m.connect(ctx, endpoints); err != nil {
		m.Close()
		return nil, err
	}
	if slices.Equal(endpoints, cfg.ClientURLs()) {
		m.local = v3client.New(e.Server)
	}
	return m, nil
}

func embedConfig(cfg Config, info transport.TLSInfo, state, initialCluster string, quiet *atomic.Bool) (*embed.Config, error) {
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = filepath.Join(cfg.DataDir, "etcd")
	peer, err := url.Parse(cfg.peerURL())
	if err != nil {
		return nil, err
	}
	client, err := url.Parse(cfg.clientURL())
	if err != nil {
		return nil, err
	}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	ec.PeerTLSInfo, ec.ClientTLSInfo = info, info
	ec.ClusterState = state
	ec.InitialCluster = initialCluster
	ec.InitialClusterToken = clusterToken
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "1h"
	ec.MaxLearners = 1
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToSlog(cfg.Logger, quiet))
	return ec, nil
}

// stopEtcd stops a member quickly: Close alone can wait seconds for a
// leadership handover that cannot happen.
func stopEtcd(e *embed.Etcd) {
	e.Server.HardStop()
	e.Close()
}

func (m *Member) connect(ctx context.Context, endpoints []string) error {
	tlsCfg, err := m.tls.ClientConfig()
	if err != nil {
		return fmt.Errorf("etcd client TLS: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg,
		DialTimeout: 5 * time.Second,
		Context:     m.ctx,
		Logger:      zapToSlog(m.log, m.quiet),
	})
	if err != nil {
		return fmt.Errorf("connect to etcd at %v: %w", endpoints, err)
	}
	// A client to a cluster without quorum connects but cannot serve:
	// check with a read before saying we are up.
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := cli.Get(cctx, "/physarum/health"); err != nil {
		cli.Close()
		return fmt.Errorf("etcd at %v does not answer: %w", endpoints, err)
	}
	m.cli = cli
	return nil
}

// Client is the etcd client (to the local member, or to the cluster).
func (m *Member) Client() *clientv3.Client { return m.cli }

// KV is the client for reads, writes and leases: the in-process one when
// this member serves its own reads, else Client. (Watches stay on Client:
// the in-process one ignores WithRequireLeader.)
func (m *Member) KV() *clientv3.Client {
	if m.local != nil {
		return m.local
	}
	return m.cli
}

// IsClient reports whether this registry-service runs no etcd member.
func (m *Member) IsClient() bool { return m.etcd == nil }

// Config returns the member's configuration.
func (m *Member) Config() Config { return m.cfg }

// Err reports a fatal etcd error (never, for a client).
func (m *Member) Err() <-chan error {
	if m.etcd == nil {
		return nil
	}
	return m.etcd.Err()
}

// Close stops the member (or client) and waits for its goroutines.
// It is idempotent.
func (m *Member) Close() {
	m.once.Do(func() {
		m.quiet.Store(true)
		m.cancel()
		m.wg.Wait()
		if m.cli != nil {
			m.cli.Close()
		}
		if m.local != nil {
			m.local.Close()
		}
		if m.etcd != nil {
			m.stopGracefully(5 * time.Second)
		}
	})
}

// promoteSelf promotes this learner to voter once etcd says it has caught
// up with the leader.
func (m *Member) promoteSelf(ctx context.Context) {
	id := uint64(m.etcd.Server.MemberID())
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := m.cli.MemberPromote(cctx, id)
		cancel()
		if err == nil || isNotLearner(err) {
			m.log.Info("promoted to voting member")
			// Serve our own reads from now on.
			m.cli.SetEndpoints(append(m.cli.Endpoints(), m.cfg.clientURL())...)
			return
		}
		m.log.Debug("not promoted yet", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// stopGracefully stops the member as etcd likes it, handing leadership
// over first so that the cluster does not wait an election timeout; when
// that takes longer than timeout (no peer to hand over to answers), it
// stops hard.
func (m *Member) stopGracefully(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		m.etcd.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		m.etcd.Server.HardStop()
		<-done
	}
}
