// Package server serves the registry protocols over libp2p: service
// definitions (add, get, list, delete) and their versions, node and
// instance records under leases, instance watches, cluster membership and
// joins.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/cluster"
	"github.com/physarum-p2p/physarum/registry-service/control"
	"github.com/physarum-p2p/physarum/registry-service/events"
)

// Config configures a Server.
type Config struct {
	// Writers, when not empty, are the only peers that may add or delete
	// services. Node and instance records can only ever be written by the
	// node they describe.
	Writers map[peer.ID]bool
	// VoterCap is the most voting etcd members the cluster grows to
	// (default 3); further registry-services join as clients.
	VoterCap int
	// MaxScale caps a desired count (default registry.DefaultMaxScale).
	MaxScale int
	// RequestTimeout bounds one request (default 10s).
	RequestTimeout time.Duration
	// Logger receives the server's events.
	Logger *slog.Logger
	// Registerer receives the server's metrics (nil: none).
	Registerer prometheus.Registerer
}

// maxRequest bounds a registry request frame: a ServiceInfo is small.
const maxRequest = 256 << 10

// maxResponse bounds a response: a list of many services or instances.
const maxResponse = 16 << 20

// records is what the server reads and writes: service definitions,
// node and instance records, and registry-services' own records. *Store
// implements it over etcd. Errors the caller can act on are *wire.Error
// (not_found, conflict, unavailable, timeout). Safe for concurrent use;
// every method returns when ctx ends.
type records interface {
	// AddService registers a service definition as its next version
	// (nothing written when it is the current one) and says what it did.
	AddService(ctx context.Context, name string, v registry.ServiceVersion) (control.Added, error)
	// AddServiceWith is AddService that also writes along in the same
	// transaction (an update's rollout record).
	AddServiceWith(ctx context.Context, name string, v registry.ServiceVersion, along *control.Along) (control.Added, error)
	GetService(ctx context.Context, name string) (registry.ServiceInfo, error)
	// ServiceHistory reads the versions kept of a service's definition,
	// newest first.
	ServiceHistory(ctx context.Context, name string) ([]registry.ServiceVersion, error)
	ListServices(ctx context.Context) (map[string]registry.ServiceInfo, error)
	DeleteService(ctx context.Context, name string) (rev int64, err error)
	// PutNode keeps a node record under its lease (ttl seconds, 0 for
	// the default) and reports whether the lease was granted anew.
	PutNode(ctx context.Context, node registry.Node, ttl int) (granted bool, err error)
	// DeleteNode removes a node's record and its instances.
	DeleteNode(ctx context.Context, id string) error
	ListNodes(ctx context.Context) ([]registry.Node, error)
	// PutInstance writes an instance record under its node's lease.
	PutInstance(ctx context.Context, inst registry.Instance) error
	DeleteInstance(ctx context.Context, service, id string) error
	// ListInstances lists one service's instances ("" for all) and the
	// revision read.
	ListInstances(ctx context.Context, service string) ([]registry.Instance, int64, error)
	// ListAnnounced reads the records registry-services keep alive about
	// themselves.
	ListAnnounced(ctx context.Context) ([]announceRecord, error)
}

// membership is what the server needs from the etcd cluster member it
// runs with. *cluster.Member implements it.
type membership interface {
	// Admit decides how the registry-service named name joins; it
	// returns an error matching cluster.ErrBusy while another join is in
	// progress.
	Admit(ctx context.Context, name string, req registry.JoinRequest, voterCap int) (registry.JoinResponse, error)
	// Members lists etcd's voters and learners.
	Members(ctx context.Context) ([]registry.Member, error)
	// IsClient reports whether this registry-service runs no etcd member.
	IsClient() bool
	// Client is the etcd client for watches and this registry-service's
	// own record.
	Client() *clientv3.Client
}

var (
	_ records    = (*Store)(nil)
	_ membership = (*cluster.Member)(nil)
)

// Server serves the registry on a libp2p host.
type Server struct {
	cfg     Config
	log     *slog.Logger
	host    host.Host
	member  membership
	store   records
	ctl     *control.Control
	events  *events.Streamer
	rpc     *wire.Server
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
}

// track counts a watch stream in the wait group, unless the server is
// closing.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// New starts serving on h with the cluster member m.
func New(h host.Host, m *cluster.Member, cfg Config) *Server {
	st := NewStore(m.KV())
	s := newServer(m, st, cfg)
	// Reads and writes on the in-process client when there is one.
	s.ctl = control.New(m.KV(), st, control.Config{MaxScale: s.cfg.MaxScale, Logger: s.log})
	s.ctl.SetDeployer(control.NewHostDeployer(h))
	s.host = h
	s.rpc = wire.NewServer(h, s.log, nil)
	s.rpc.Handle(registry.Protocol, s.handle, wire.HandleOptions{
		MaxRequest: maxRequest, MaxResponse: maxResponse, Timeout: s.cfg.RequestTimeout,
	})
	s.rpc.Handle(registry.JoinProtocol, s.handleJoin, wire.HandleOptions{
		MaxRequest: 16 << 10, Timeout: 60 * time.Second,
	})
	h.SetStreamHandler(registry.WatchProtocol, s.serveWatch)
	// Event streams watch on the member's client of the cluster, which
	// honours WithRequireLeader (the in-process one does not).
	s.events = events.New(m.Client(), events.Config{Registerer: cfg.Registerer, Logger: s.log})
	s.ctl.SetEvents(s.events)
	h.SetStreamHandler(registry.EventsProtocol, s.serveEvents)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.announce(s.ctx)
	}()
	return s
}

// newServer returns a Server that decides requests over st and m but
// serves nothing yet: New puts it on a host.
func newServer(m membership, st records, cfg Config) *Server {
	if cfg.VoterCap <= 0 {
		cfg.VoterCap = 3
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var cli *clientv3.Client
	if m != nil {
		cli = m.Client()
	}
	return &Server{
		cfg: cfg, log: cfg.Logger, member: m, store: st,
		ctl:     control.New(cli, st, control.Config{MaxScale: cfg.MaxScale, Logger: cfg.Logger}),
		metrics: newMetrics(cfg.Registerer), ctx: ctx, cancel: cancel,
	}
}

// Control is the server's implementation of the control operations, for
// the daemon's other doors (the HTTP API) and its reconciler.
func (s *Server) Control() *control.Control { return s.ctl }

// Store is the server's record store (for the daemon and tests).
func (s *Server) Store() *Store {
	st, _ := s.store.(*Store)
	return st
}

// Close stops serving and waits for requests and watches in flight.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.host.RemoveStreamHandler(registry.WatchProtocol)
	s.host.RemoveStreamHandler(registry.EventsProtocol)
	s.rpc.Close()
	s.cancel()
	s.wg.Wait()
	s.metrics.unregister()
	if s.events != nil {
		s.events.Close()
	}
}

func (s *Server) handle(ctx context.Context, req wire.Request) (any, error) {
	start := time.Now()
	var r registry.Request
	if err := req.Decode(&r); err != nil {
		s.metrics.observe("invalid", wire.CodeBadRequest, time.Since(start))
		return nil, err
	}
	resp, err := s.dispatch(ctx, req.Peer, r)
	code := wire.CodeOf(err)
	if err != nil && code == "" {
		code = wire.CodeInternal
	}
	op := r.Op
	if !knownOps[op] && !callbackOps[op] {
		op = "unknown"
	}
	s.metrics.observe(op, code, time.Since(start))
	if err != nil && code == wire.CodeInternal {
		s.log.Error("request failed", "op", r.Op, "peer", req.Peer, "err", err)
	}
	return resp, err
}

var knownOps = map[string]bool{
	registry.OpAdd: true, registry.OpGet: true, registry.OpList: true, registry.OpDelete: true,
	registry.OpMembers: true, registry.OpNodePut: true, registry.OpNodeList: true,
	registry.OpNodeDelete: true, registry.OpInstancePut: true, registry.OpInstanceDelete: true,
	registry.OpInstanceList: true, registry.OpScale: true, registry.OpStatus: true,
	registry.OpComputeList: true, registry.OpComputeGet: true, registry.OpComputePut: true,
	registry.OpComputeDelete: true, registry.OpLaunch: true, registry.OpLaunchedGet: true,
	registry.OpLaunchedList: true, registry.OpLaunchedAct: true, registry.OpLaunchedForget: true,
	registry.OpAutoscaleSet: true, registry.OpAutoscaleGet: true, registry.OpAutoscaleDelete: true,
	registry.OpUpdate: true, registry.OpRolloutList: true, registry.OpPromote: true, registry.OpRollback: true,
	registry.OpServiceHistory: true,
}

func (s *Server) dispatch(ctx context.Context, from peer.ID, r registry.Request) (*registry.Response, error) {
	ctx = registry.WithCaller(ctx, "peer "+from.String())
	switch r.Op {
	case registry.OpScale, registry.OpStatus, registry.OpComputeList, registry.OpComputeGet,
		registry.OpComputePut, registry.OpComputeDelete, registry.OpAutoscaleSet, registry.OpAutoscaleGet,
		registry.OpAutoscaleDelete, registry.OpServiceHistory, registry.OpUpdate, registry.OpRolloutList,
		registry.OpPromote, registry.OpRollback:
		return s.dispatchControl(ctx, from, r)
	case registry.OpLaunch, registry.OpLaunchedGet, registry.OpLaunchedList, registry.OpLaunchedAct,
		registry.OpLaunchedForget:
		return s.dispatchLifecycle(ctx, from, r)
	case registry.OpAdd:
		return s.add(ctx, from, r)
	case registry.OpGet:
		if err := registry.ValidateName(r.Name); err != nil {
			return nil, badRequest(err)
		}
		info, err := s.store.GetService(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		return &registry.Response{Info: &info}, nil
	case registry.OpList:
		svcs, err := s.store.ListServices(ctx)
		return &registry.Response{Services: svcs}, err
	case registry.OpDelete:
		return s.delete(ctx, from, r)
	case registry.OpMembers:
		ms, err := s.members(ctx)
		return &registry.Response{Members: ms}, err
	case registry.OpNodePut:
		if r.Node == nil {
			return nil, wire.Errorf(wire.CodeBadRequest, "node.put without Node")
		}
		if r.Node.PeerID != from.String() {
			return nil, wire.Errorf(wire.CodeForbidden, "a node can only publish its own record (sender %s, record %s)", from, r.Node.PeerID)
		}
		granted, err := s.store.PutNode(ctx, *r.Node, r.TTL)
		return &registry.Response{LeaseGranted: granted}, err
	case registry.OpNodeList:
		nodes, err := s.store.ListNodes(ctx)
		if r.Brief {
			for i := range nodes {
				nodes[i] = nodes[i].Brief()
			}
		}
		return &registry.Response{Nodes: nodes}, err
	case registry.OpNodeDelete:
		return &registry.Response{}, s.store.DeleteNode(ctx, from.String())
	case registry.OpInstancePut:
		return s.putInstance(ctx, from, r)
	case registry.OpInstanceDelete:
		if err := registry.ValidateName(r.Name); err != nil || r.ID == "" {
			return nil, wire.Errorf(wire.CodeBadRequest, "instance.delete needs a valid Name and an ID")
		}
		return &registry.Response{}, s.store.DeleteInstance(ctx, r.Name, r.ID)
	case registry.OpInstanceList:
		if r.Name != "" {
			if err := registry.ValidateName(r.Name); err != nil {
				return nil, badRequest(err)
			}
		}
		insts, rev, err := s.store.ListInstances(ctx, r.Name)
		return &registry.Response{Instances: insts, Revision: rev}, err
	case registry.OpCallbackAdd, registry.OpCallbackList, registry.OpCallbackGet, registry.OpCallbackDelete:
		return s.dispatchCallbacks(ctx, from, r)
	case "":
		return nil, wire.Errorf(wire.CodeBadRequest, "request without Op")
	}
	return nil, wire.Errorf(wire.CodeBadRequest, "unknown Op %q", r.Op)
}

func badRequest(err error) error {
	return &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}
}

func (s *Server) mayWrite(from peer.ID) error {
	if len(s.cfg.Writers) == 0 || s.cfg.Writers[from] {
		return nil
	}
	return wire.Errorf(wire.CodeForbidden, "peer %s may not change services: it is not on this registry's -writers allowlist", from)
}

func (s *Server) add(ctx context.Context, from peer.ID, r registry.Request) (*registry.Response, error) {
	if err := s.mayWrite(from); err != nil {
		return nil, err
	}
	if err := registry.ValidateName(r.Name); err != nil {
		return nil, badRequest(err)
	}
	if r.Info == nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "add without Info")
	}
	if err := r.Info.Validate(); err != nil {
		return nil, badRequest(err)
	}
	msg, rev, err := s.ctl.AddServiceRev(ctx, r.Name, *r.Info)
	if err != nil {
		return nil, err
	}
	return &registry.Response{Message: msg, Revision: rev}, nil
}

func (s *Server) delete(ctx context.Context, from peer.ID, r registry.Request) (*registry.Response, error) {
	if err := s.mayWrite(from); err != nil {
		return nil, err
	}
	if err := registry.ValidateName(r.Name); err != nil {
		return nil, badRequest(err)
	}
	msg, rev, err := s.ctl.DeleteServiceRev(ctx, r.Name)
	if err != nil {
		return nil, err
	}
	return &registry.Response{Message: msg, Revision: rev}, nil
}

func (s *Server) putInstance(ctx context.Context, from peer.ID, r registry.Request) (*registry.Response, error) {
	inst := r.Instance
	if inst == nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "instance.put without Instance")
	}
	if inst.Node != from.String() {
		return nil, wire.Errorf(wire.CodeForbidden, "a node can only publish its own instances (sender %s, instance of %s)", from, inst.Node)
	}
	if err := registry.ValidateName(inst.Service); err != nil {
		return nil, badRequest(err)
	}
	if err := registry.ValidateName(inst.ID); err != nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "instance ID %q: use lower-case letters, digits and '-'", inst.ID)
	}
	return &registry.Response{}, s.store.PutInstance(ctx, *inst)
}

func (s *Server) handleJoin(ctx context.Context, req wire.Request) (any, error) {
	var jr registry.JoinRequest
	if err := req.Decode(&jr); err != nil {
		return nil, err
	}
	resp, err := s.member.Admit(ctx, req.Peer.String(), jr, s.cfg.VoterCap)
	if errors.Is(err, cluster.ErrBusy) {
		return nil, wire.Errorf(wire.CodeUnavailable, "%v", err)
	}
	if err != nil {
		return nil, wire.Errorf(wire.CodeUnavailable, "admit %s: %v", req.Peer, err)
	}
	role := registry.RoleLearner
	if resp.Client {
		role = registry.RoleClient
	}
	s.log.Info("registry-service joins", "peer", req.Peer, "role", role)
	return resp, nil
}

// announceRecord is what each registry-service writes about itself, so
// that members lists clients of the cluster too.
type announceRecord struct {
	Name  string   `json:"Name"`
	Role  string   `json:"Role"`
	Addrs []string `json:"Addrs"`
}

// announce keeps this registry-service's record alive under a lease.
func (s *Server) announce(ctx context.Context) {
	cli := s.member.Client()
	for ctx.Err() == nil {
		role := registry.RoleVoter
		if s.member.IsClient() {
			role = registry.RoleClient
		}
		var addrs []string
		for _, a := range s.host.Addrs() {
			addrs = append(addrs, a.String())
		}
		b, _ := json.Marshal(announceRecord{Name: s.host.ID().String(), Role: role, Addrs: addrs})
		err := s.keepAnnounced(ctx, cli, string(b))
		if ctx.Err() == nil {
			s.log.Debug("member record lapsed; renewing", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) keepAnnounced(ctx context.Context, cli *clientv3.Client, value string) error {
	grant, err := cli.Grant(ctx, 10)
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, prefixMembers+s.host.ID().String(), value, clientv3.WithLease(grant.ID)); err != nil {
		return err
	}
	ch, err := cli.KeepAlive(ctx, grant.ID)
	if err != nil {
		return err
	}
	for range ch {
	}
	return errors.New("keepalive ended")
}

// members merges etcd's member list with the registry-services that run
// as clients.
func (s *Server) members(ctx context.Context) ([]registry.Member, error) {
	ms, err := s.member.Members(ctx)
	if err != nil {
		return nil, unavailable("list members", err)
	}
	recs, err := s.store.ListAnnounced(ctx)
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		if rec.Role != registry.RoleClient {
			continue // voters and learners are in etcd's list
		}
		ms = append(ms, registry.Member{Name: rec.Name, Role: registry.RoleClient, Started: true, Healthy: true})
	}
	return ms, nil
}
