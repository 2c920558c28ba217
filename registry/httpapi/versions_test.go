package httpapi

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

// fakeVersions is a Controller that serves versions too: service "svc"
// has two.
type fakeVersions struct {
	*fakeControl
	asked []string // the services asked for, with their callers
}

func (f *fakeVersions) History(ctx context.Context, service string) ([]registry.ServiceVersion, error) {
	f.asked = append(f.asked, service+" by "+registry.CallerOf(ctx))
	if service != "svc" {
		return nil, wire.Errorf(wire.CodeNotFound, "no service named %q", service)
	}
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	return []registry.ServiceVersion{
		{Version: 2, Info: registry.ServiceInfo{DockerHash: "img:2", CpuReq: 200, Version: 2}, SetBy: "peer b", SetAt: at.Add(time.Hour)},
		{Version: 1, Info: registry.ServiceInfo{DockerHash: "img:1", CpuReq: 100, Version: 1}, SetBy: "peer a", SetAt: at},
	}, nil
}

var _ registry.VersionHistory = (*fakeVersions)(nil)

func TestVersionsRoute(t *testing.T) {
	f := &fakeVersions{fakeControl: newFake()}
	h := New(f, Options{})
	var got versionsAnswer
	answer(t, send(t, h, "GET", "/service/SVC/versions/", ""), http.StatusOK, &got)
	if got.Service != "svc" || len(got.Versions) != 2 || got.Versions[0].Version != 2 || got.Versions[0].Info.DockerHash != "img:2" ||
		got.Versions[1].SetBy != "peer a" || got.Versions[1].SetAt.IsZero() {
		t.Fatalf("GET /service/svc/versions answered %+v", got)
	}
	refusal(t, send(t, h, "GET", "/service/nope/versions", ""), http.StatusNotFound, wire.CodeNotFound)
	refusal(t, send(t, h, "GET", "/service/no%20pe/versions", ""), http.StatusBadRequest, wire.CodeBadRequest)
	refusal(t, send(t, h, "POST", "/service/svc/versions", `{}`), http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	refusal(t, send(t, h, "GET", "/service/svc/versions/2", ""), http.StatusNotFound, wire.CodeNotFound)
	if want := []string{"svc by http 127.0.0.1", "nope by http 127.0.0.1"}; len(f.asked) != 2 || f.asked[0] != want[0] || f.asked[1] != want[1] {
		t.Fatalf("the Controller was asked %q, want %q (a bad name never reaches it)", f.asked, want)
	}

	// A read: the token when reads need one, none with PublicRead.
	tok := New(f, Options{Token: "s3cret"})
	refusal(t, send(t, tok, "GET", "/service/svc/versions", ""), http.StatusUnauthorized, CodeUnauthorized)
	answer(t, send(t, New(f, Options{Token: "s3cret", PublicRead: true}), "GET", "/service/svc/versions", ""), http.StatusOK, nil)

	// A Controller without versions does not serve the route.
	refusal(t, send(t, New(newFake(), Options{}), "GET", "/service/svc/versions", ""), http.StatusNotFound, wire.CodeNotFound)
}

// TestWriteStatusFollowsTheMessage: a service (or compute) added is 201;
// updated to a new version, or registered again unchanged, 200.
func TestWriteStatusFollowsTheMessage(t *testing.T) {
	for msg, want := range map[string]int{
		"added service x, version 1":     http.StatusCreated,
		"updated service x, version 2":   http.StatusOK,
		"service x unchanged, version 2": http.StatusOK,
		"added compute site-a":           http.StatusCreated,
		"updated compute site-a":         http.StatusOK,
	} {
		if got := createdOrUpdated(msg); got != want {
			t.Errorf("%q: %d, want %d", msg, got, want)
		}
	}
}
