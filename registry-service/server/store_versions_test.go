package server

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/control"
)

// versionOf is a definition that differs by its CPU requirement.
func versionOf(cpu int) registry.ServiceVersion {
	return registry.ServiceVersion{
		Info:  registry.ServiceInfo{Exec: &registry.ExecConf{Command: "/bin/task", Args: []string{"-port", "${SERVICE_PORT}"}}, CpuReq: cpu, MemoryReq: 16},
		SetBy: fmt.Sprintf("test %d", cpu), SetAt: time.Unix(int64(cpu), 0).UTC(),
	}
}

// versionsOf lists the version numbers of a history.
func versionsOf(h []registry.ServiceVersion) []int {
	out := make([]int, len(h))
	for i, v := range h {
		out[i] = v.Version
	}
	return out
}

// historyKeys lists the version keys etcd holds for a service.
func historyKeys(t *testing.T, cli *clientv3.Client, name string) []string {
	t.Helper()
	resp, err := cli.Get(t.Context(), versionsPrefix(name), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// TestStoreVersionsAServicesDefinitions: the first registration is
// version 1; the same definition again (whatever Version it carries)
// writes nothing and stays at its version; a changed one is the next
// version, and the history lists both, newest first, with who set each.
func TestStoreVersionsAServicesDefinitions(t *testing.T) {
	cli := emptyEtcd(t)
	st, ctx := NewStore(cli), t.Context()
	a, err := st.AddService(ctx, "svc", versionOf(100))
	if err != nil || a != (control.Added{Changed: true, Version: 1, Revision: a.Revision}) || a.Revision == 0 {
		t.Fatalf("first registration: %+v, %v; want version 1, changed", a, err)
	}
	written := modRevision(t, cli, serviceKey("svc"))

	again := versionOf(100)
	again.Info.Version = 7 // ignored
	again.SetBy = "someone else"
	a, err = st.AddService(ctx, "svc", again)
	if err != nil || a.Changed || !a.Existed || a.Version != 1 {
		t.Fatalf("the same definition again: %+v, %v; want unchanged at version 1", a, err)
	}
	if got := modRevision(t, cli, serviceKey("svc")); got != written {
		t.Fatalf("an unchanged definition was written again (revision %d -> %d)", written, got)
	}

	a, err = st.AddService(ctx, "svc", versionOf(200))
	if err != nil || !a.Changed || !a.Existed || a.Version != 2 {
		t.Fatalf("a changed definition: %+v, %v; want version 2", a, err)
	}
	info, err := st.GetService(ctx, "svc")
	if err != nil || info.Version != 2 || info.CpuReq != 200 {
		t.Fatalf("get: %+v, %v; want version 2 with 200m", info, err)
	}
	all, err := st.ListServices(ctx)
	if err != nil || all["svc"].Version != 2 {
		t.Fatalf("list: %+v, %v", all, err)
	}
	h, err := st.ServiceHistory(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	if got := versionsOf(h); !slices.Equal(got, []int{2, 1}) {
		t.Fatalf("history versions %v, want [2 1]", got)
	}
	if h[0].Info.CpuReq != 200 || h[0].Info.Version != 2 || h[0].SetBy != "test 200" || !h[0].SetAt.Equal(time.Unix(200, 0)) ||
		h[1].Info.CpuReq != 100 || h[1].Info.Version != 1 || h[1].SetBy != "test 100" {
		t.Fatalf("history %+v", h)
	}
	// Going back to an older definition is a new version too.
	if a, err := st.AddService(ctx, "svc", versionOf(100)); err != nil || a.Version != 3 {
		t.Fatalf("the first definition again after a change: %+v, %v; want version 3", a, err)
	}
	if _, err := st.ServiceHistory(ctx, "nope"); wire.CodeOf(err) != wire.CodeNotFound {
		t.Fatalf("history of an unknown service: %v, want not_found", err)
	}
}

// TestStoreKeepsTheLastVersions: registering version
// ServiceVersionsKept+1 forgets version 1, in etcd too.
func TestStoreKeepsTheLastVersions(t *testing.T) {
	cli := emptyEtcd(t)
	st, ctx := NewStore(cli), t.Context()
	last := registry.ServiceVersionsKept + 1
	for v := 1; v <= last; v++ {
		a, err := st.AddService(ctx, "svc", versionOf(v))
		if err != nil || a.Version != v {
			t.Fatalf("registration %d: %+v, %v", v, a, err)
		}
		if v == registry.ServiceVersionsKept {
			if n := len(historyKeys(t, cli, "svc")); n != registry.ServiceVersionsKept {
				t.Fatalf("%d versions registered, %d kept; want all", v, n)
			}
		}
	}
	h, err := st.ServiceHistory(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for v := last; v > last-registry.ServiceVersionsKept; v-- {
		want = append(want, v)
	}
	if got := versionsOf(h); !slices.Equal(got, want) {
		t.Fatalf("history versions %v, want %v", got, want)
	}
	keys := historyKeys(t, cli, "svc")
	if len(keys) != registry.ServiceVersionsKept || keys[0] != control.VersionKey("svc", 2) {
		t.Fatalf("keys kept %v: want versions 2 to %d", keys, last)
	}
}

// TestStoreDeleteServiceDeletesItsVersions: the history goes with the
// service, another service's stays, and the name registered again starts
// at version 1.
func TestStoreDeleteServiceDeletesItsVersions(t *testing.T) {
	cli := emptyEtcd(t)
	st, ctx := NewStore(cli), t.Context()
	for _, name := range []string{"svc", "svc-other"} {
		for cpu := 1; cpu <= 3; cpu++ {
			if _, err := st.AddService(ctx, name, versionOf(cpu)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := st.DeleteService(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if keys := historyKeys(t, cli, "svc"); len(keys) != 0 {
		t.Fatalf("versions left after delete: %v", keys)
	}
	if keys := historyKeys(t, cli, "svc-other"); len(keys) != 3 {
		t.Fatalf("another service's versions: %v, want 3", keys)
	}
	if _, err := st.ServiceHistory(ctx, "svc"); wire.CodeOf(err) != wire.CodeNotFound {
		t.Fatalf("history after delete: %v, want not_found", err)
	}
	if a, err := st.AddService(ctx, "svc", versionOf(9)); err != nil || a.Existed || a.Version != 1 {
		t.Fatalf("registered again after delete: %+v, %v; want a new service at version 1", a, err)
	}
}

// TestStoreConcurrentChangesNeverShareAVersion: registrations of
// different definitions racing through two stores (two registry-services)
// each become a version of their own, one after another, or fail with a
// conflict; never two the same version.
func TestStoreConcurrentChangesNeverShareAVersion(t *testing.T) {
	cli := emptyEtcd(t)
	ctx := t.Context()
	stores := []*Store{NewStore(cli), NewStore(cli)}
	if _, err := stores[0].AddService(ctx, "svc", versionOf(1)); err != nil {
		t.Fatal(err)
	}
	const racers = 8
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		versions  []int
		conflicts int
	)
	for i := range racers {
		wg.Go(func() {
			a, err := stores[i%2].AddService(ctx, "svc", versionOf(100+i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case wire.CodeOf(err) == wire.CodeConflict:
				conflicts++
			case err != nil:
				t.Errorf("racer %d: %v", i, err)
			case !a.Changed:
				t.Errorf("racer %d: a different definition unchanged: %+v", i, a)
			default:
				versions = append(versions, a.Version)
			}
		})
	}
	wg.Wait()
	slices.Sort(versions)
	for i, v := range versions {
		if v != i+2 {
			t.Fatalf("versions given %v (%d conflicts): want 2, 3, ... each once", versions, conflicts)
		}
	}
	info, err := stores[1].GetService(ctx, "svc")
	if err != nil || info.Version != len(versions)+1 {
		t.Fatalf("current %+v, %v; want version %d", info, err, len(versions)+1)
	}
	t.Logf("%d racers: versions %v, %d conflicts", racers, versions, conflicts)
}

// TestStoreDefinitionFromBeforeVersionsIsVersion1: a definition stored
// without a version reads as version 1, is version 1 when registered
// again unchanged, and is kept as version 1 when it changes.
func TestStoreDefinitionFromBeforeVersionsIsVersion1(t *testing.T) {
	cli := emptyEtcd(t)
	st, ctx := NewStore(cli), t.Context()
	legacy := `{"Exec":{"Command":"/bin/task","Args":["-port","${SERVICE_PORT}"]},"NetworkSoftReq":{"RTT":0},"NetworkHardReq":{"RTT":0},"CpuReq":100,"MemoryReq":16}`
	if _, err := cli.Put(ctx, serviceKey("svc"), legacy); err != nil {
		t.Fatal(err)
	}
	if info, err := st.GetService(ctx, "svc"); err != nil || info.Version != 1 {
		t.Fatalf("get: %+v, %v; want version 1", info, err)
	}
	if h, err := st.ServiceHistory(ctx, "svc"); err != nil || !slices.Equal(versionsOf(h), []int{1}) || h[0].Info.CpuReq != 100 {
		t.Fatalf("history: %+v, %v; want version 1 alone", h, err)
	}
	if a, err := st.AddService(ctx, "svc", versionOf(100)); err != nil || a.Changed || a.Version != 1 {
		t.Fatalf("the same definition again: %+v, %v; want unchanged at version 1", a, err)
	}
	if a, err := st.AddService(ctx, "svc", versionOf(200)); err != nil || a.Version != 2 {
		t.Fatalf("changed: %+v, %v; want version 2", a, err)
	}
	h, err := st.ServiceHistory(ctx, "svc")
	if err != nil || !slices.Equal(versionsOf(h), []int{2, 1}) || h[1].Info.CpuReq != 100 || h[1].Info.Version != 1 {
		t.Fatalf("history: %+v, %v; want 2, then the old definition as 1", h, err)
	}
}

// TestStoreWritesAVersionAndItsAlongKeyTogether: AddServiceWith writes a
// new version and along's key in one transaction, given the definition it
// replaces; it writes neither when along's key has moved, when along's
// value fails, or when the definition is unchanged.
func TestStoreWritesAVersionAndItsAlongKeyTogether(t *testing.T) {
	cli := emptyEtcd(t)
	st, ctx := NewStore(cli), t.Context()
	const key = "/test/along/svc"
	errMoved := wire.Errorf(wire.CodeConflict, "moved")
	var gotPrev *registry.ServiceInfo
	along := func(rev int64) *control.Along {
		return &control.Along{Key: key, ModRevision: rev, Changed: errMoved,
			Value: func(prev *registry.ServiceInfo, version int) (string, error) {
				gotPrev = prev
				return fmt.Sprintf("version %d", version), nil
			}}
	}
	if _, err := st.AddServiceWith(ctx, "svc", versionOf(100), along(0)); err != nil {
		t.Fatal(err)
	}
	if gotPrev != nil {
		t.Fatalf("a new service's previous definition: %+v, want none", gotPrev)
	}
	if v := valueOf(t, cli, key); v != "version 1" {
		t.Fatalf("along key %q, want %q", v, "version 1")
	}
	rev := modRevision(t, cli, key)

	// The key moved since it was read: no version, no write.
	if _, err := cli.Put(ctx, key, "someone else"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddServiceWith(ctx, "svc", versionOf(200), along(rev)); err != errMoved { //nolint:errorlint // the very error given
		t.Fatalf("add with a moved key: %v, want %v", err, errMoved)
	}
	if info, _ := st.GetService(ctx, "svc"); info.Version != 1 || len(historyKeys(t, cli, "svc")) != 1 {
		t.Fatalf("a failed add wrote a version: %+v, history %v", info, historyKeys(t, cli, "svc"))
	}

	// A failing value: nothing written, its error returned.
	failing := along(modRevision(t, cli, key))
	failing.Value = func(*registry.ServiceInfo, int) (string, error) { return "", errMoved }
	if _, err := st.AddServiceWith(ctx, "svc", versionOf(200), failing); err != errMoved { //nolint:errorlint // the very error given
		t.Fatalf("add with a failing value: %v", err)
	}
	if info, _ := st.GetService(ctx, "svc"); info.Version != 1 {
		t.Fatalf("a failed add wrote version %d", info.Version)
	}

	// Unchanged: neither written.
	rev = modRevision(t, cli, key)
	if a, err := st.AddServiceWith(ctx, "svc", versionOf(100), along(rev)); err != nil || a.Changed {
		t.Fatalf("the same definition: %+v, %v", a, err)
	}
	if modRevision(t, cli, key) != rev {
		t.Fatal("an unchanged definition wrote the along key")
	}

	// A new version: both, with the definition it replaces.
	a, err := st.AddServiceWith(ctx, "svc", versionOf(300), along(rev))
	if err != nil || a.Version != 2 {
		t.Fatalf("a new version: %+v, %v", a, err)
	}
	if gotPrev == nil || gotPrev.Version != 1 || gotPrev.CpuReq != 100 {
		t.Fatalf("previous definition given: %+v, want version 1 with 100m", gotPrev)
	}
	if v := valueOf(t, cli, key); v != "version 2" || modRevision(t, cli, key) != a.Revision {
		t.Fatalf("along key %q at revision %d, want %q written with the version (revision %d)", v, modRevision(t, cli, key), "version 2", a.Revision)
	}
}

func valueOf(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	resp, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}
