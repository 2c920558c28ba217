package images_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/allocator/images"
	"github.com/physarum-p2p/physarum/common/dockerd"
	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
)

// stores is the machine's Docker daemon (A, where images are built) and
// one of the test's own (B, with an empty image store), so that an image
// can be seen to travel.
type stores struct {
	a, b *images.DockerStore
	bd   *dockerd.Daemon
}

func newStores(t *testing.T) stores {
	t.Helper()
	a, err := images.NewDockerStore("")
	if err == nil {
		_, err = a.List(t.Context())
	}
	if err != nil {
		t.Skipf("docker: no daemon answers: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	bd := dockerd.Test(t)
	b, err := images.NewDockerStore(bd.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return stores{a: a, b: b, bd: bd}
}

func mainClient(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// newFetcher is images.NewFetcher, closed when the test ends.
func newFetcher(t *testing.T, h host.Host, holders images.Holders, store images.Store, opts images.FetcherOptions) *images.Fetcher {
	t.Helper()
	f := images.NewFetcher(h, holders, store, opts)
	t.Cleanup(f.Close)
	return f
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, p2ptest.IgnoreLeaks()...)
}

// static is a Holders that names the same peers every time.
type static []peer.ID

func (s static) Holders(context.Context, string) ([]peer.ID, error) { return s, nil }

// countingStore counts the streams it saves.
type countingStore struct {
	images.Store
	saves atomic.Int32
}

func (c *countingStore) Save(ctx context.Context, id string) (io.ReadCloser, error) {
	c.saves.Add(1)
	return c.Store.Save(ctx, id)
}

// lyingStore sends another image than the one asked for.
type lyingStore struct {
	images.Store
	instead string
}

func (l *lyingStore) Size(ctx context.Context, id string) (int64, error) { return 1, nil }

func (l *lyingStore) Save(ctx context.Context, id string) (io.ReadCloser, error) {
	return l.Store.Save(ctx, l.instead)
}

// stallingStore sends the first bytes of the image, then nothing more
// until released.
type stallingStore struct {
	images.Store
	sent    chan struct{} // closed once the first bytes are out
	release chan struct{}
}

func (s *stallingStore) Save(ctx context.Context, id string) (io.ReadCloser, error) {
	rc, err := s.Store.Save(ctx, id)
	if err != nil {
		return nil, err
	}
	return &stallingReader{rc: rc, s: s, left: 300 << 10}, nil
}

type stallingReader struct {
	rc   io.ReadCloser
	s    *stallingStore
	left int
	once sync.Once
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		r.once.Do(func() { close(r.s.sent) })
		<-r.s.release
		return 0, errors.New("released")
	}
	n, err := r.rc.Read(p[:min(len(p), r.left)])
	r.left -= n
	return n, err
}

func (r *stallingReader) Close() error { return r.rc.Close() }

func serve(t *testing.T, h host.Host, store images.Store, opts images.ServerOptions) *images.Server {
	t.Helper()
	s := images.Serve(h, store, opts)
	t.Cleanup(s.Close)
	return s
}

func imagesOf(t *testing.T, s images.Store) []string {
	t.Helper()
	ids, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

func TestFetchBringsTheImageOnceForConcurrentNeeds(t *testing.T) {
	st := newStores(t)
	nodes := p2ptest.Network(t, 2, nil)
	id := dockerd.TestImage(t, mainClient(t), 2<<20)
	holder := &countingStore{Store: st.a}
	serve(t, nodes[0].Host(), holder, images.ServerOptions{})
	var fetched atomic.Int32
	f := newFetcher(t, nodes[1].Host(), static{nodes[0].ID()}, st.b, images.FetcherOptions{
		Fetched: func(got string) {
			if got == id {
				fetched.Add(1)
			}
		},
	})

	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { errs[i] = f.Fetch(t.Context(), id) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("need %d: %v", i, err)
		}
	}
	if n := holder.saves.Load(); n != 1 {
		t.Errorf("5 concurrent needs made %d transfers, want 1", n)
	}
	if size, err := st.b.Size(t.Context(), id); err != nil || size == 0 {
		t.Fatalf("the image is not in the second daemon under its ID: %v", err)
	}
	if fetched.Load() != 1 {
		t.Errorf("Fetched was told %d times, want 1", fetched.Load())
	}
	// Held now: no transfer at all.
	if err := f.Fetch(t.Context(), id); err != nil || holder.saves.Load() != 1 {
		t.Errorf("a held image was fetched again (err %v, %d transfers)", err, holder.saves.Load())
	}
}

func TestALyingHolderIsRefusedAndWhatItSentRemoved(t *testing.T) {
	st := newStores(t)
	nodes := p2ptest.Network(t, 2, nil)
	cli := mainClient(t)
	want, decoy := dockerd.TestImage(t, cli, 64<<10), dockerd.TestImage(t, cli, 64<<10)
	serve(t, nodes[0].Host(), &lyingStore{Store: st.a, instead: decoy}, images.ServerOptions{})
	before := imagesOf(t, st.b)

	f := newFetcher(t, nodes[1].Host(), static{nodes[0].ID()}, st.b, images.FetcherOptions{})
	err := f.Fetch(t.Context(), want)
	if !errors.Is(err, images.ErrNoHolder) || !strings.Contains(err.Error(), "image ID mismatch") || !strings.Contains(err.Error(), decoy) {
		t.Fatalf("err %v, want a refusal that names the mismatch and the image sent", err)
	}
	if after := imagesOf(t, st.b); !slices.Equal(before, after) {
		t.Fatalf("the second daemon's images changed: %v, then %v", before, after)
	}
}

func TestAHolderThatDiesMidTransferIsReplacedByTheNext(t *testing.T) {
	st := newStores(t)
	nodes := p2ptest.Network(t, 3, nil)
	id := dockerd.TestImage(t, mainClient(t), 2<<20)
	stall := &stallingStore{Store: st.a, sent: make(chan struct{}), release: make(chan struct{})}
	defer close(stall.release)
	serve(t, nodes[0].Host(), stall, images.ServerOptions{})
	good := &countingStore{Store: st.a}
	serve(t, nodes[1].Host(), good, images.ServerOptions{})
	before := imagesOf(t, st.b)

	f := newFetcher(t, nodes[2].Host(), static{nodes[0].ID(), nodes[1].ID()}, st.b, images.FetcherOptions{})
	done := make(chan error, 1)
	go func() { done <- f.Fetch(t.Context(), id) }()
	select {
	case <-stall.sent:
	case <-time.After(30 * time.Second):
		t.Fatal("the first holder never started sending")
	}
	// The first holder dies in the middle.
	if err := nodes[0].Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the fetch did not go on from the second holder")
	}
	if good.saves.Load() != 1 {
		t.Errorf("the second holder sent %d times, want 1", good.saves.Load())
	}
	after := imagesOf(t, st.b)
	if len(after) != len(before)+1 || !slices.Contains(after, id) {
		t.Fatalf("want exactly the image added: %v, then %v", before, after)
	}
}

func TestAStalledTransferFailsWithinItsDeadlineLeavingNothing(t *testing.T) {
	st := newStores(t)
	nodes := p2ptest.Network(t, 2, nil)
	id := dockerd.TestImage(t, mainClient(t), 2<<20)
	stall := &stallingStore{Store: st.a, sent: make(chan struct{}), release: make(chan struct{})}
	defer close(stall.release)
	serve(t, nodes[0].Host(), stall, images.ServerOptions{IdleTimeout: time.Minute})
	before := imagesOf(t, st.b)

	f := newFetcher(t, nodes[1].Host(), static{nodes[0].ID()}, st.b, images.FetcherOptions{IdleTimeout: 500 * time.Millisecond})
	start := time.Now()
	err := f.Fetch(t.Context(), id)
	if !errors.Is(err, images.ErrNoHolder) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("err %v, want a failed transfer", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %s to give up on a stalled holder", took)
	}
	if after := imagesOf(t, st.b); !slices.Equal(before, after) {
		t.Fatalf("something half-loaded remains: %v, then %v", before, after)
	}
}

func TestNoHolderIsAClearReason(t *testing.T) {
	st := newStores(t)
	nodes := p2ptest.Network(t, 1, nil)
	id := "sha256:" + strings.Repeat("0", 64)
	f := newFetcher(t, nodes[0].Host(), static{}, st.b, images.FetcherOptions{})
	err := f.Fetch(t.Context(), id)
	if !errors.Is(err, images.ErrNoHolder) || err.Error() != "no node of the network holds image "+id+": no holder" {
		t.Fatalf("err %v", err)
	}
}

func TestABusyHolderSendsTheFetcherToTheNext(t *testing.T) {
	st := newStores(t)
	nodes := p2ptest.Network(t, 3, nil)
	id := dockerd.TestImage(t, mainClient(t), 1<<20)
	stall := &stallingStore{Store: st.a, sent: make(chan struct{}), release: make(chan struct{})}
	defer close(stall.release)
	serve(t, nodes[0].Host(), stall, images.ServerOptions{MaxTransfers: 1})
	good := &countingStore{Store: st.a}
	serve(t, nodes[1].Host(), good, images.ServerOptions{})

	// Occupy the first holder's only slot with a transfer that stalls.
	busyFetcher := newFetcher(t, nodes[2].Host(), static{nodes[0].ID()}, &countingStore{Store: st.b}, images.FetcherOptions{IdleTimeout: time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = busyFetcher.Fetch(ctx, id) }()
	<-stall.sent

	f := newFetcher(t, nodes[2].Host(), static{nodes[0].ID(), nodes[1].ID()}, st.b, images.FetcherOptions{})
	if err := f.Fetch(t.Context(), id); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if good.saves.Load() != 1 {
		t.Fatalf("the second holder sent %d times, want 1", good.saves.Load())
	}
}

// rawCall sends payload as the request frame and returns the reply.
func rawCall(t *testing.T, h host.Host, p peer.ID, payload []byte, then func(io.Writer)) (images.Reply, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, p, images.Protocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	if err := wire.WriteFrame(s, payload, 1<<10); err != nil {
		t.Fatal(err)
	}
	var reply images.Reply
	b, err := wire.ReadFrame(s, 4<<10)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if err := wire.DecodeResponse(b, &reply); err != nil || then == nil {
		return reply, err
	}
	then(s)
	_ = s.CloseWrite()
	b, err = wire.ReadFrame(s, 4<<10)
	if err != nil {
		t.Fatalf("no second reply: %v", err)
	}
	err = wire.DecodeResponse(b, &reply)
	return reply, err
}

func TestBadRequestsAndStreamsAreRefusedAndTheServerKeepsServing(t *testing.T) {
	st := newStores(t)
	nodes := p2ptest.Network(t, 2, nil)
	id := dockerd.TestImage(t, mainClient(t), 16<<10) // its stream is under MaxSize
	srv := nodes[0].Host()
	serve(t, srv, st.b, images.ServerOptions{MaxSize: 64 << 10})
	h, p := nodes[1].Host(), nodes[0].ID()
	missing := "sha256:" + strings.Repeat("7", 64)
	before := imagesOf(t, st.b)

	for _, tc := range []struct {
		name, payload, code string
		then                func(io.Writer)
	}{
		{"garbage", "\x00\xffnot json", wire.CodeBadRequest, nil},
		{"unknown op", `{"op":"rm","image":"` + missing + `"}`, wire.CodeBadRequest, nil},
		{"not an ID", `{"op":"get","image":"alpine"}`, wire.CodeBadRequest, nil},
		{"unknown image", `{"op":"get","image":"` + missing + `"}`, wire.CodeNotFound, nil},
		{"truncated put", `{"op":"put","image":"` + id + `"}`, wire.CodeBadRequest, func(w io.Writer) {
			_, _ = w.Write([]byte{0, 0, 0, 100, 'a', 'b'}) // a chunk cut short
		}},
		{"oversized put", `{"op":"put","image":"` + id + `"}`, wire.CodeTooLarge, func(w io.Writer) {
			chunk := make([]byte, 4+60<<10)
			chunk[1], chunk[2] = 0, 0xF0 // 60 KiB chunks: the second passes 64 KiB
			for range 3 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
		{"garbage put", `{"op":"put","image":"` + id + `"}`, wire.CodeBadRequest, func(w io.Writer) {
			_, _ = w.Write([]byte{0, 0, 0, 4, 'j', 'u', 'n', 'k', 0, 0, 0, 0})
			_ = wire.WriteFrame(w, []byte(`{"bytes":4}`), 100)
		}},
	} {
		_, err := rawCall(t, h, p, []byte(tc.payload), tc.then)
		if wire.CodeOf(err) != tc.code {
			t.Errorf("%s: err %v, want code %s", tc.name, err, tc.code)
		}
	}
	if after := imagesOf(t, st.b); !slices.Equal(before, after) {
		t.Fatalf("refused puts changed the store: %v, then %v", before, after)
	}
	// Still serving: a real put of the image works.
	res, err := images.Push(t.Context(), h, p, st.a, id, 0, nil)
	if err == nil && res.Had {
		err = errors.New("the peer claims it had the image")
	}
	if err != nil {
		t.Fatalf("push after the bad ones: %v", err)
	}
}

func TestPushHandsTheImageOverOnce(t *testing.T) {
	st := newStores(t)
	nodes := p2ptest.Network(t, 2, nil)
	id := dockerd.TestImage(t, mainClient(t), 1<<20)
	var loaded atomic.Value
	serve(t, nodes[0].Host(), st.b, images.ServerOptions{Loaded: func(got string) { loaded.Store(got) }})

	if has, err := images.Has(t.Context(), nodes[1].Host(), nodes[0].ID(), id); err != nil || has {
		t.Fatalf("has before the push: %v, %v", has, err)
	}
	var progress atomic.Int64
	res, err := images.Push(t.Context(), nodes[1].Host(), nodes[0].ID(), st.a, id, 0, func(n int64) { progress.Store(n) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Had || res.Bytes < 1<<20 || progress.Load() != res.Bytes {
		t.Fatalf("push %+v, progress %d: want the whole image sent", res, progress.Load())
	}
	if _, err := st.b.Size(t.Context(), id); err != nil {
		t.Fatalf("not in the second daemon: %v", err)
	}
	if loaded.Load() != id {
		t.Errorf("Loaded told %v", loaded.Load())
	}
	if has, err := images.Has(t.Context(), nodes[1].Host(), nodes[0].ID(), id); err != nil || !has {
		t.Fatalf("has after the push: %v, %v", has, err)
	}
	res, err = images.Push(t.Context(), nodes[1].Host(), nodes[0].ID(), st.a, id, 0, nil)
	if err != nil || !res.Had || res.Bytes != 0 {
		t.Fatalf("second push %+v, %v: want Had and nothing sent", res, err)
	}
}

// announcements records what a Keeper announces.
type announcements struct {
	mu sync.Mutex
	on map[string]bool
}

func (a *announcements) AdvertiseNow(ns string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.on[ns] = true
}

func (a *announcements) StopAdvertising(ns string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.on, ns)
}

func (a *announcements) has(ns string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.on[ns]
}

func TestKeeperRemovesUnusedImagesAfterTheGraceOnly(t *testing.T) {
	st := newStores(t)
	cli := st.bd.Client
	service, used, unused := dockerd.TestImage(t, cli, 1<<10), dockerd.TestImage(t, cli, 1<<10), dockerd.TestImage(t, cli, 1<<10)
	operators := dockerd.TestImage(t, cli, 1<<10) // never handed to the keeper
	// A container (never started) keeps its image in use.
	if _, err := cli.ContainerCreate(t.Context(), client.ContainerCreateOptions{
		Name: "physarum-keeper-test", Config: &container.Config{Image: used, Cmd: []string{"/payload"}},
	}); err != nil {
		t.Fatal(err)
	}
	var services atomic.Value
	services.Store(map[string]bool{service: true})
	ann := &announcements{on: map[string]bool{}}
	grace := 300 * time.Millisecond
	k := images.NewKeeper(st.b, func(context.Context) (map[string]bool, error) {
		return services.Load().(map[string]bool), nil
	}, ann, images.KeeperOptions{Every: 50 * time.Millisecond, Grace: grace})
	for _, id := range []string{used, unused} {
		k.Add(id)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	defer func() { cancel(); <-done }()

	eventually.True(t, 10*time.Second, "the service's image is held", func() bool { return slices.Equal(k.Held(), []string{service}) })
	if !ann.has(images.Namespace(service)) || !ann.has(images.Namespace(used)) {
		t.Errorf("not announced: %v", ann.on)
	}
	eventually.True(t, 10*time.Second, "the unused image is removed after the grace", func() bool { return !slices.Contains(imagesOf(t, st.b), unused) })
	if ann.has(images.Namespace(unused)) {
		t.Error("a removed image is still announced")
	}
	// Several graces later, the others are all there.
	time.Sleep(3 * grace) // the absence of removals over a span is what is tested
	have := imagesOf(t, st.b)
	for _, id := range []string{service, used, operators} {
		if !slices.Contains(have, id) {
			t.Errorf("image %s was removed", id)
		}
	}
	// The service goes: its image follows after the grace.
	services.Store(map[string]bool{})
	eventually.True(t, 10*time.Second, "a deleted service's image is removed", func() bool { return !slices.Contains(imagesOf(t, st.b), service) })
	if len(k.Held()) != 0 {
		t.Errorf("still held: %v", k.Held())
	}
}

func TestKeeperChangesNothingWithoutTheRegistry(t *testing.T) {
	st := newStores(t)
	id := dockerd.TestImage(t, st.bd.Client, 1<<10)
	ann := &announcements{on: map[string]bool{}}
	var calls atomic.Int32
	k := images.NewKeeper(st.b, func(context.Context) (map[string]bool, error) {
		calls.Add(1)
		return nil, errors.New("no registry answers")
	}, ann, images.KeeperOptions{Every: 20 * time.Millisecond, Grace: time.Nanosecond})
	k.Add(id)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	eventually.True(t, 10*time.Second, "ten passes", func() bool { return calls.Load() >= 10 })
	cancel()
	<-done
	if !slices.Contains(imagesOf(t, st.b), id) {
		t.Fatal("an image was removed while the registry could not say which services exist")
	}
}
