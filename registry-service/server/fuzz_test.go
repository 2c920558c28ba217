package server

import (
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
)

// FuzzRequest sends arbitrary bytes to the registry protocol's handler as
// one request, over a real etcd: every operation, the desired-state ones
// included, answers or refuses with a structured error, and never
// panics.
func FuzzRequest(f *testing.F) {
	one := 1
	for _, r := range []registry.Request{
		{Op: registry.OpList},
		{Op: registry.OpAdd, Name: "svc", Info: &registry.ServiceInfo{Exec: &registry.ExecConf{Command: "x"}}},
		{Op: registry.OpScale, Name: "svc", Number: &one},
		{Op: registry.OpScale, Name: "svc", ComputeName: "nowhere", Number: &one},
		{Op: registry.OpScale, Name: "svc"},
		{Op: registry.OpStatus, Name: "svc"},
		{Op: registry.OpStatus},
		{Op: registry.OpComputeList},
		{Op: registry.OpComputeGet, ComputeName: "physarum"},
		{Op: registry.OpComputePut, Compute: &registry.Compute{Name: "site-a", Connector: "physarum:labels?site=a"}},
		{Op: registry.OpComputePut},
		{Op: registry.OpComputeDelete, ComputeName: "site-a"},
		{Op: registry.OpDelete, Name: "svc"},
		{Op: registry.OpLaunch, Launch: &registry.LaunchRequest{Service: "svc", UUID: "0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"}},
		{Op: registry.OpLaunchedGet, UUID: "0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"},
		{Op: registry.OpLaunchedList, Name: "svc"},
		{Op: registry.OpLaunchedAct, UUID: "0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f", Action: "explode"},
		{Op: registry.OpLaunchedForget, UUID: "0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"},
	} {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte(`{"Op":"scale","Name":"svc","Number":-5}`))
	f.Add([]byte(`{"Op":"compute.put","Compute":{"name":"physarum","connector":"physarum"}}`))
	f.Add([]byte(`{"Op":"status","Name":"../../x"}`))
	f.Add([]byte(`not json`))
	cli := emptyEtcd(f)
	st := NewStore(cli)
	s := newServer(&fakeMember{}, st, Config{Logger: slog.New(slog.DiscardHandler)})
	s.ctl = control.New(cli, st, control.Config{MaxScale: 100})
	f.Cleanup(s.cancel)
	from := p2ptest.ID(f, 1)
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := s.handle(t.Context(), wire.Request{Peer: from, Body: body})
		if err != nil {
			if wire.CodeOf(err) == "" {
				t.Fatalf("%q: unstructured error %v", body, err)
			}
			return
		}
		if resp == nil {
			t.Fatalf("%q: no answer and no error", body)
		}
	})
}
