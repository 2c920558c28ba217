package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/cluster"
	"github.com/physarum-p2p/physarum/registry-service/control"
)

// These tests drive the server's decisions (dispatch, validation, the
// writers allowlist, who may write which record, joins, members, metrics)
// through its handlers, against in-test fakes of the store and the
// cluster member: no network, no etcd. store_test.go runs the Store
// itself on etcd.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(stopEtcdAfterRun{m},
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		// etcd's gRPC keeps a few resolver goroutines process-wide.
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

// stopEtcdAfterRun stops the Store tests' etcd once they have run,
// before goleak looks for goroutines left behind.
type stopEtcdAfterRun struct{ m *testing.M }

func (r stopEtcdAfterRun) Run() int {
	defer shared.Close()
	return r.m.Run()
}

// fakeStore records every call made to it ("op arg..."), and keeps just
// enough state to answer: which services exist.
type fakeStore struct {
	mu        sync.Mutex
	calls     []string
	services  map[string]registry.ServiceInfo
	announced []announceRecord
	granted   bool
	rev       int64
	err       error // returned by every call when set
}

func newFakeStore() *fakeStore {
	return &fakeStore{services: map[string]registry.ServiceInfo{}, rev: 7}
}

func (f *fakeStore) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeStore) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeStore) AddService(_ context.Context, name string, v registry.ServiceVersion) (control.Added, error) {
	f.record("add %s", name)
	if f.err != nil {
		return control.Added{}, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, existed := f.services[name]
	if existed {
		if old.Version = 0; reflect.DeepEqual(old, v.Info) {
			return control.Added{Existed: true, Version: f.services[name].Version, Revision: f.rev}, nil
		}
	}
	v.Info.Version = f.services[name].Version + 1
	f.services[name] = v.Info
	return control.Added{Existed: existed, Changed: true, Version: v.Info.Version, Revision: f.rev}, nil
}

// AddServiceWith is not used by the server's own operations (updates go
// through control, whose tests run on the real Store).
func (f *fakeStore) AddServiceWith(_ context.Context, name string, _ registry.ServiceVersion, _ *control.Along) (control.Added, error) {
	f.record("add-with %s", name)
	return control.Added{}, wire.Errorf(wire.CodeUnavailable, "the fake store keeps no rollouts")
}

func (f *fakeStore) ServiceHistory(_ context.Context, name string) ([]registry.ServiceVersion, error) {
	f.record("history %s", name)
	if f.err != nil {
		return nil, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	info, ok := f.services[name]
	if !ok {
		return nil, wire.Errorf(wire.CodeNotFound, "no service named %q", name)
	}
	return []registry.ServiceVersion{{Version: info.Version, Info: info}}, nil
}

func (f *fakeStore) GetService(_ context.Context, name string) (registry.ServiceInfo, error) {
	f.record("get %s", name)
	if f.err != nil {
		return registry.ServiceInfo{}, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	info, ok := f.services[name]
	if !ok {
		return info, wire.Errorf(wire.CodeNotFound, "no service named %q", name)
	}
	return info, nil
}

func (f *fakeStore) ListServices(context.Context) (map[string]registry.ServiceInfo, error) {
	f.record("list")
	return nil, f.err
}

func (f *fakeStore) DeleteService(_ context.Context, name string) (int64, error) {
	f.record("delete %s", name)
	if f.err != nil {
		return 0, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.services[name]; !ok {
		return 0, wire.Errorf(wire.CodeNotFound, "no service named %q", name)
	}
	delete(f.services, name)
	return f.rev, nil
}

func (f *fakeStore) PutNode(_ context.Context, n registry.Node, ttl int) (bool, error) {
	f.record("node.put %s ttl=%d", n.PeerID, ttl)
	return f.granted, f.err
}

func (f *fakeStore) DeleteNode(_ context.Context, id string) error {
	f.record("node.delete %s", id)
	return f.err
}

func (f *fakeStore) ListNodes(context.Context) ([]registry.Node, error) {
	f.record("node.list")
	return nil, f.err
}

func (f *fakeStore) PutInstance(_ context.Context, inst registry.Instance) error {
	f.record("instance.put %s/%s on %s", inst.Service, inst.ID, inst.Node)
	return f.err
}

func (f *fakeStore) DeleteInstance(_ context.Context, service, id string) error {
	f.record("instance.delete %s/%s", service, id)
	return f.err
}

func (f *fakeStore) ListInstances(_ context.Context, service string) ([]registry.Instance, int64, error) {
	f.record("instance.list %q", service)
	return nil, f.rev, f.err
}

func (f *fakeStore) ListAnnounced(context.Context) ([]announceRecord, error) {
	f.record("announced")
	return f.announced, f.err
}

// fakeMember plays the etcd cluster member.
type fakeMember struct {
	mu         sync.Mutex
	admitted   []string // "name voterCap"
	admitErr   error
	members    []registry.Member
	membersErr error
}

func (f *fakeMember) Admit(_ context.Context, name string, req registry.JoinRequest, voterCap int) (registry.JoinResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.admitted = append(f.admitted, fmt.Sprintf("%s %d", name, voterCap))
	if f.admitErr != nil {
		return registry.JoinResponse{}, f.admitErr
	}
	return registry.JoinResponse{InitialCluster: name + "=" + strings.Join(req.PeerURLs, ",")}, nil
}

func (f *fakeMember) Members(context.Context) ([]registry.Member, error) {
	return slices.Clone(f.members), f.membersErr
}

func (f *fakeMember) IsClient() bool           { return false }
func (f *fakeMember) Client() *clientv3.Client { return nil }

// testServer returns a server deciding over a fake store and member.
func testServer(t *testing.T, cfg Config) (*Server, *fakeStore, *fakeMember) {
	t.Helper()
	st, m := newFakeStore(), &fakeMember{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	s := newServer(m, st, cfg)
	t.Cleanup(s.cancel)
	return s, st, m
}

// call sends req (marshalled to JSON, or raw bytes) to the registry
// protocol's handler as peer from.
func call(t *testing.T, s *Server, from peer.ID, req any) (*registry.Response, error) {
	t.Helper()
	body, ok := req.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(req); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.handle(t.Context(), wire.Request{Peer: from, Body: body})
	r, _ := resp.(*registry.Response)
	return r, err
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := wire.CodeOf(err); got != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
}

func wantCalls(t *testing.T, st *fakeStore, want ...string) {
	t.Helper()
	if got := st.Calls(); !slices.Equal(got, want) {
		t.Fatalf("store calls %q, want %q", got, want)
	}
}

func validService() *registry.ServiceInfo {
	return &registry.ServiceInfo{
		Exec:           &registry.ExecConf{Command: "/bin/svc"},
		NetworkSoftReq: registry.PerfInd{RTT: 5}, NetworkHardReq: registry.PerfInd{RTT: 10},
		CpuReq: 100, MemoryReq: 64,
	}
}

func TestWritersAllowlistGuardsServiceWrites(t *testing.T) {
	for _, op := range []string{registry.OpAdd, registry.OpDelete} {
		t.Run(op, func(t *testing.T) {
			writer, stranger := p2ptest.ID(t, 1), p2ptest.ID(t, 2)
			s, st, _ := testServer(t, Config{Writers: map[peer.ID]bool{writer: true}})
			st.services["svc"] = *validService()
			req := registry.Request{Op: op, Name: "svc", Info: validService()}

			_, err := call(t, s, stranger, req)
			wantCode(t, err, wire.CodeForbidden)
			if !strings.Contains(err.Error(), "allowlist") {
				t.Fatalf("refusal %q does not say why (the -writers allowlist)", err)
			}
			wantCalls(t, st) // refused before anything is read or written

			if _, err := call(t, s, writer, req); err != nil {
				t.Fatalf("writer on the allowlist: %v", err)
			}
			wantCalls(t, st, op+" svc")
		})
	}
}

func TestNoAllowlistLetsEveryPeerWrite(t *testing.T) {
	s, st, _ := testServer(t, Config{})
	if _, err := call(t, s, p2ptest.ID(t, 2), registry.Request{Op: registry.OpAdd, Name: "svc", Info: validService()}); err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, s, p2ptest.ID(t, 3), registry.Request{Op: registry.OpDelete, Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, st, "add svc", "delete svc")
}

func TestAllowlistDoesNotGuardANodesOwnRecords(t *testing.T) {
	node := p2ptest.ID(t, 2)
	s, st, _ := testServer(t, Config{Writers: map[peer.ID]bool{p2ptest.ID(t, 1): true}})
	for _, req := range []registry.Request{
		{Op: registry.OpNodePut, Node: &registry.Node{PeerID: node.String()}},
		{Op: registry.OpInstancePut, Instance: &registry.Instance{ID: "i-1", Service: "svc", Node: node.String()}},
		{Op: registry.OpNodeDelete},
	} {
		if _, err := call(t, s, node, req); err != nil {
			t.Fatalf("%s by a node not on the writers allowlist: %v", req.Op, err)
		}
	}
	wantCalls(t, st, "node.put "+node.String()+" ttl=0", "instance.put svc/i-1 on "+node.String(), "node.delete "+node.String())
}

func TestAddValidatesBeforeWriting(t *testing.T) {
	longName := strings.Repeat("a", registry.MaxNameLen+1)
	for name, req := range map[string]registry.Request{
		"empty name":         {Name: "", Info: validService()},
		"long name":          {Name: longName, Info: validService()},
		"upper case":         {Name: "Svc", Info: validService()},
		"space":              {Name: "my svc", Info: validService()},
		"path":               {Name: "a/b", Info: validService()},
		"leading dash":       {Name: "-svc", Info: validService()},
		"no info":            {Name: "svc"},
		"soft above hard":    {Name: "svc", Info: &registry.ServiceInfo{Exec: &registry.ExecConf{Command: "x"}, NetworkSoftReq: registry.PerfInd{RTT: 20}, NetworkHardReq: registry.PerfInd{RTT: 10}}},
		"rtt in nanoseconds": {Name: "svc", Info: &registry.ServiceInfo{Exec: &registry.ExecConf{Command: "x"}, NetworkHardReq: registry.PerfInd{RTT: 5e9}}},
		"nothing to run":     {Name: "svc", Info: &registry.ServiceInfo{CpuReq: 100}},
		"negative cpu":       {Name: "svc", Info: &registry.ServiceInfo{Exec: &registry.ExecConf{Command: "x"}, CpuReq: -1}},
		"empty command":      {Name: "svc", Info: &registry.ServiceInfo{Exec: &registry.ExecConf{Command: " "}}},
	} {
		t.Run(name, func(t *testing.T) {
			s, st, _ := testServer(t, Config{})
			req.Op = registry.OpAdd
			_, err := call(t, s, p2ptest.ID(t, 1), req)
			wantCode(t, err, wire.CodeBadRequest)
			wantCalls(t, st)
		})
	}
}

func TestAddSaysWhetherItAddedOrUpdated(t *testing.T) {
	s, st, _ := testServer(t, Config{})
	req := registry.Request{Op: registry.OpAdd, Name: "svc", Info: validService()}
	resp, err := call(t, s, p2ptest.ID(t, 1), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message != "added service svc, version 1" || resp.Revision != st.rev {
		t.Fatalf("first add answered %+v", resp)
	}
	if resp, err = call(t, s, p2ptest.ID(t, 1), req); err != nil {
		t.Fatal(err)
	}
	if resp.Message != "service svc unchanged, version 1" {
		t.Fatalf("the same definition again answered %q, want unchanged", resp.Message)
	}
	req.Info.CpuReq = 200
	if resp, err = call(t, s, p2ptest.ID(t, 1), req); err != nil {
		t.Fatal(err)
	}
	if resp.Message != "updated service svc, version 2" {
		t.Fatalf("a changed definition answered %q, want an update to version 2", resp.Message)
	}
	if st.services["svc"].CpuReq != 200 {
		t.Fatalf("stored %+v", st.services["svc"])
	}
}

// TestHistoryIsAReadForEveryPeer: service.history needs no place on the
// writers allowlist, checks the name before reading, and answers the
// store's versions.
func TestHistoryIsAReadForEveryPeer(t *testing.T) {
	writer, stranger := p2ptest.ID(t, 1), p2ptest.ID(t, 2)
	s, st, _ := testServer(t, Config{Writers: map[peer.ID]bool{writer: true}})
	if _, err := call(t, s, writer, registry.Request{Op: registry.OpAdd, Name: "svc", Info: validService()}); err != nil {
		t.Fatal(err)
	}
	resp, err := call(t, s, stranger, registry.Request{Op: registry.OpServiceHistory, Name: "svc"})
	if err != nil || len(resp.Versions) != 1 || resp.Versions[0].Version != 1 || resp.Versions[0].Info.CpuReq != 100 {
		t.Fatalf("history: %+v, %v", resp, err)
	}
	_, err = call(t, s, stranger, registry.Request{Op: registry.OpServiceHistory, Name: "../svc"})
	wantCode(t, err, wire.CodeBadRequest)
	_, err = call(t, s, stranger, registry.Request{Op: registry.OpServiceHistory, Name: "nope"})
	wantCode(t, err, wire.CodeNotFound)
	wantCalls(t, st, "add svc", "history svc", "history nope")
}

func TestDeleteValidatesTheName(t *testing.T) {
	s, st, _ := testServer(t, Config{})
	_, err := call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpDelete, Name: "../svc"})
	wantCode(t, err, wire.CodeBadRequest)
	wantCalls(t, st)

	_, err = call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpDelete, Name: "svc"})
	wantCode(t, err, wire.CodeNotFound) // the store's answer, passed on

	st.services["svc"] = *validService()
	resp, err := call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpDelete, Name: "svc"})
	if err != nil || resp.Message != "deleted service svc" || resp.Revision != st.rev {
		t.Fatalf("delete answered %+v, %v", resp, err)
	}
}

func TestGetValidatesTheNameBeforeReading(t *testing.T) {
	s, st, _ := testServer(t, Config{})
	_, err := call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpGet, Name: "Svc"})
	wantCode(t, err, wire.CodeBadRequest)
	wantCalls(t, st)

	st.services["svc"] = *validService()
	resp, err := call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpGet, Name: "svc"})
	if err != nil || resp.Info == nil || resp.Info.CpuReq != 100 {
		t.Fatalf("get answered %+v, %v", resp, err)
	}
}

func TestNodeRecordsAreWrittenOnlyByTheirNode(t *testing.T) {
	node, other := p2ptest.ID(t, 1), p2ptest.ID(t, 2)
	s, st, _ := testServer(t, Config{})

	_, err := call(t, s, other, registry.Request{Op: registry.OpNodePut, Node: &registry.Node{PeerID: node.String()}})
	wantCode(t, err, wire.CodeForbidden)
	_, err = call(t, s, node, registry.Request{Op: registry.OpNodePut})
	wantCode(t, err, wire.CodeBadRequest)
	wantCalls(t, st)

	st.granted = true
	resp, err := call(t, s, node, registry.Request{Op: registry.OpNodePut, Node: &registry.Node{PeerID: node.String()}, TTL: 30})
	if err != nil || !resp.LeaseGranted {
		t.Fatalf("node.put answered %+v, %v; want the store's granted lease passed on", resp, err)
	}
	wantCalls(t, st, "node.put "+node.String()+" ttl=30")
}

func TestNodeDeleteRemovesOnlyTheSendersRecord(t *testing.T) {
	node, other := p2ptest.ID(t, 1), p2ptest.ID(t, 2)
	s, st, _ := testServer(t, Config{})
	// Whatever the request names, a node can only remove itself.
	if _, err := call(t, s, node, registry.Request{Op: registry.OpNodeDelete, Name: other.String(), ID: other.String()}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, st, "node.delete "+node.String())
}

func TestInstancePutValidatesBeforeWriting(t *testing.T) {
	node := p2ptest.ID(t, 1)
	for name, tc := range map[string]struct {
		inst *registry.Instance
		code string
	}{
		"no instance":        {nil, wire.CodeBadRequest},
		"another node's":     {&registry.Instance{ID: "i-1", Service: "svc", Node: p2ptest.ID(t, 2).String()}, wire.CodeForbidden},
		"no node":            {&registry.Instance{ID: "i-1", Service: "svc"}, wire.CodeForbidden},
		"bad service name":   {&registry.Instance{ID: "i-1", Service: "Svc", Node: node.String()}, wire.CodeBadRequest},
		"no service":         {&registry.Instance{ID: "i-1", Node: node.String()}, wire.CodeBadRequest},
		"no ID":              {&registry.Instance{Service: "svc", Node: node.String()}, wire.CodeBadRequest},
		"ID with a slash":    {&registry.Instance{ID: "i/1", Service: "svc", Node: node.String()}, wire.CodeBadRequest},
		"ID with upper case": {&registry.Instance{ID: "I-1", Service: "svc", Node: node.String()}, wire.CodeBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			s, st, _ := testServer(t, Config{})
			_, err := call(t, s, node, registry.Request{Op: registry.OpInstancePut, Instance: tc.inst})
			wantCode(t, err, tc.code)
			wantCalls(t, st)
		})
	}
	s, st, _ := testServer(t, Config{})
	if _, err := call(t, s, node, registry.Request{Op: registry.OpInstancePut,
		Instance: &registry.Instance{ID: "i-1", Service: "svc", Node: node.String()}}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, st, "instance.put svc/i-1 on "+node.String())
}

func TestInstanceDeleteNeedsANameAndAnID(t *testing.T) {
	for name, req := range map[string]registry.Request{
		"no name":  {ID: "i-1"},
		"bad name": {Name: "a/b", ID: "i-1"},
		"no ID":    {Name: "svc"},
	} {
		t.Run(name, func(t *testing.T) {
			s, st, _ := testServer(t, Config{})
			req.Op = registry.OpInstanceDelete
			_, err := call(t, s, p2ptest.ID(t, 1), req)
			wantCode(t, err, wire.CodeBadRequest)
			wantCalls(t, st)
		})
	}
	s, st, _ := testServer(t, Config{})
	if _, err := call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpInstanceDelete, Name: "svc", ID: "i-1"}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, st, "instance.delete svc/i-1")
}

func TestInstanceListFiltersByAValidName(t *testing.T) {
	s, st, _ := testServer(t, Config{})
	_, err := call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpInstanceList, Name: "Svc"})
	wantCode(t, err, wire.CodeBadRequest)
	wantCalls(t, st)

	for _, name := range []string{"", "svc"} {
		resp, err := call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpInstanceList, Name: name})
		if err != nil || resp.Revision != st.rev {
			t.Fatalf("instance.list %q answered %+v, %v; want the read's revision", name, resp, err)
		}
	}
	wantCalls(t, st, `instance.list ""`, `instance.list "svc"`)
}

func TestMalformedRequestsAreBadRequests(t *testing.T) {
	for name, body := range map[string][]byte{
		"not json":      []byte(`{"Op":"add","Na`),
		"unknown field": []byte(`{"Op":"get","Nmae":"svc"}`),
		"wrong type":    []byte(`{"Op":"get","Name":7}`),
		"no op":         []byte(`{"Name":"svc"}`),
		"unknown op":    []byte(`{"Op":"frobnicate","Name":"svc"}`),
	} {
		t.Run(name, func(t *testing.T) {
			s, st, _ := testServer(t, Config{})
			st.services["svc"] = *validService()
			_, err := call(t, s, p2ptest.ID(t, 1), body)
			wantCode(t, err, wire.CodeBadRequest)
			if slices.Contains(st.Calls(), "delete svc") {
				t.Fatal("a malformed request deleted a service")
			}
		})
	}
}

func TestJoinAsksTheMemberToAdmitTheSender(t *testing.T) {
	joiner := p2ptest.ID(t, 1)
	join := func(s *Server, body []byte) (registry.JoinResponse, error) {
		resp, err := s.handleJoin(t.Context(), wire.Request{Peer: joiner, Body: body})
		r, _ := resp.(registry.JoinResponse)
		return r, err
	}
	good := []byte(`{"PeerURLs":["https://127.0.0.1:2380"]}`)

	s, _, m := testServer(t, Config{})
	resp, err := join(s, good)
	if err != nil || !strings.HasPrefix(resp.InitialCluster, joiner.String()+"=") {
		t.Fatalf("join answered %+v, %v", resp, err)
	}
	// Admitted under its authenticated peer ID, within the default cap.
	if want := []string{joiner.String() + " 3"}; !slices.Equal(m.admitted, want) {
		t.Fatalf("admitted %q, want %q", m.admitted, want)
	}

	s, _, m = testServer(t, Config{VoterCap: 5})
	if _, err := join(s, good); err != nil {
		t.Fatal(err)
	}
	if want := []string{joiner.String() + " 5"}; !slices.Equal(m.admitted, want) {
		t.Fatalf("admitted %q, want the configured cap: %q", m.admitted, want)
	}

	s, _, m = testServer(t, Config{})
	_, err = join(s, []byte(`{"PeerURL":"x"}`))
	wantCode(t, err, wire.CodeBadRequest)
	if len(m.admitted) != 0 {
		t.Fatal("a malformed join request reached the member")
	}

	// Both a busy lock and a failed admission are worth retrying.
	for _, admitErr := range []error{fmt.Errorf("take lock: %w", cluster.ErrBusy), errors.New("add learner: too many learners")} {
		s, _, m = testServer(t, Config{})
		m.admitErr = admitErr
		_, err = join(s, good)
		wantCode(t, err, wire.CodeUnavailable)
		if !strings.Contains(err.Error(), admitErr.Error()) {
			t.Fatalf("join refusal %q does not say why (%v)", err, admitErr)
		}
	}
}

func TestMembersAddsClientsToEtcdsMembers(t *testing.T) {
	s, st, m := testServer(t, Config{})
	m.members = []registry.Member{
		{Name: "a", Role: registry.RoleVoter, Started: true, Healthy: true},
		{Name: "b", Role: registry.RoleLearner, Started: true},
	}
	st.announced = []announceRecord{
		{Name: "a", Role: registry.RoleVoter}, // already in etcd's list
		{Name: "c", Role: registry.RoleClient},
	}
	resp, err := call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpMembers})
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(m.members), registry.Member{Name: "c", Role: registry.RoleClient, Started: true, Healthy: true})
	if !slices.EqualFunc(resp.Members, want, func(a, b registry.Member) bool {
		return a.Name == b.Name && a.Role == b.Role && a.Started == b.Started && a.Healthy == b.Healthy
	}) {
		t.Fatalf("members %+v, want %+v", resp.Members, want)
	}

	m.membersErr = errors.New("etcd down")
	_, err = call(t, s, p2ptest.ID(t, 1), registry.Request{Op: registry.OpMembers})
	wantCode(t, err, wire.CodeUnavailable)
}

func TestRequestMetricsByOpAndCode(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, st, _ := testServer(t, Config{Registerer: reg})
	from := p2ptest.ID(t, 1)
	st.services["svc"] = *validService()
	_, _ = call(t, s, from, registry.Request{Op: registry.OpGet, Name: "svc"})
	_, _ = call(t, s, from, registry.Request{Op: registry.OpGet, Name: "Svc"})
	_, _ = call(t, s, from, registry.Request{Op: "frobnicate"})
	_, _ = call(t, s, from, []byte(`{"Op":`))
	st.err = errors.New("disk on fire") // not a *wire.Error: a bug, reported as internal
	_, _ = call(t, s, from, registry.Request{Op: registry.OpList})

	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "physarum_registry_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[strings.Join(labels, ",")] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"code=ok,op=get":              1,
		"code=bad_request,op=get":     1,
		"code=bad_request,op=unknown": 1,
		"code=bad_request,op=invalid": 1,
		"code=internal,op=list":       1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("requests_total %v, want %v", got, want)
	}
}
