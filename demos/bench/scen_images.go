package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	docker "github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/physarum-p2p/physarum/allocator/images"
	"github.com/physarum-p2p/physarum/common/dockerd"
	"github.com/physarum-p2p/physarum/common/logging"
)

// runImages measures how Docker images travel inside the network (issue
// 12) between two image stores on this machine: the machine's Docker
// daemon (A) and a daemon of the scenario's own (B, dockerd.Start; root
// needed), one Docker allocator on each.
//
//   - Transfer rate: images of 5, 20 and 80 MB of random payload, built in
//     A, fetched into B from allocator A's image server by the
//     images.Fetcher an allocator runs (here in the bench process, on its
//     client node), against `docker save` from A piped into `docker load`
//     in B through the two clients in this process. To tell where the
//     time goes, also the fetch into a store that drops what it takes,
//     and each daemon's half alone (save into memory, load from it).
//   - Cold start: the first request through a client proxy to a fresh
//     service name whose hello image B lacks (allocator B fetches it from
//     allocator A, then starts the container), against the same with the
//     image present in B. Allocator A has too little CPU for the service,
//     so every instance lands on B. B's own fetch rates are read from its
//     log ("fetched image").
//   - Layer deduplication: the five demo images built as make demo builds
//     them (in B), their layers read from `docker save`: what a node that
//     needs all five receives today, and with each layer sent once.
//
// Without Docker, or where B cannot start, the scenario says why and
// measures nothing.
func runImages(ctx context.Context, r *run) error {
	if r.s.docker == "" {
		r.skipped("no Docker daemon answers (%v)", r.s.dockerErr)
		return nil
	}
	b, err := dockerd.Start(ctx, "")
	if err != nil {
		r.skipped("a second Docker daemon cannot start here: %v", err)
		return nil
	}
	defer b.Close()
	r.say("daemon B started: %s", b.Host)
	storeA, err := images.NewDockerStore("")
	if err != nil {
		return err
	}
	defer storeA.Close()
	storeB, err := images.NewDockerStore(b.Host)
	if err != nil {
		return err
	}
	defer storeB.Close()
	cliA, err := docker.New(docker.FromEnv)
	if err != nil {
		return err
	}
	defer cliA.Close()

	n, err := r.s.newNetwork(r, "images", true)
	if err != nil {
		return err
	}
	defer n.close()
	r.sc.Setup = fmt.Sprintf("1 registry-service; allocator img-a (-runtime docker, 0.5 CPU) on this machine's Docker daemon (A), "+
		"allocator img-b (-runtime docker, 4 CPUs) on a Docker daemon started by the scenario (B: its own data root, "+
		"%s storage); 1 client proxy; %s.", storageDriverOf(ctx, b.Client), n.timing())
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	allocs, err := n.startAllocators(ctx,
		allocSpec{name: "img-a", runtime: "docker", cpus: "0.5", memory: 2048, logLevel: "info"},
		allocSpec{name: "img-b", runtime: "docker", cpus: "4", memory: 4096, logLevel: "info", env: []string{"DOCKER_HOST=" + b.Host}})
	if err != nil {
		return err
	}
	a, bn := allocs[0], allocs[1]
	c, err := n.client(ctx)
	if err != nil {
		return err
	}
	if err := c.connect(ctx, a); err != nil {
		return err
	}
	it := &imageRun{r: r, n: n, c: c, a: a, b: bn, storeA: storeA, storeB: storeB, cliA: cliA, cliB: b.Client}
	defer it.removeBuilt()
	if err := it.transfers(ctx); err != nil {
		return err
	}
	if err := it.coldStarts(ctx); err != nil {
		return err
	}
	return it.dedup(ctx, b.Host)
}

// imageRun is what the parts of the images scenario share.
type imageRun struct {
	r          *run
	n          *network
	c          *client
	a, b       *allocator
	storeA     *images.DockerStore
	storeB     *images.DockerStore
	cliA, cliB *docker.Client
	builtA     []string // images built in A, removed at the end
	lastSave   float64  // MiB/s of the last save into memory (halves)
}

// transferSizes are the image sizes of the transfer figures, in MB.
func (it *imageRun) transferSizes() []int {
	if it.r.quick() {
		return []int{20}
	}
	return []int{5, 20, 80}
}

// transfers measures part a: the fetch against the direct pipe, and, to
// tell where the time goes, the fetch into a store that discards what it
// takes, and each daemon's half alone (save into memory, load from it).
func (it *imageRun) transfers(ctx context.Context) error {
	r := it.r
	reps := r.pick(3, 1)
	for _, size := range it.transferSizes() {
		payload := make([]byte, size*1_000_000)
		_, _ = rand.Read(payload)
		id, err := dockerd.BuildScratchImage(ctx, it.cliA, map[string][]byte{"payload": payload},
			map[string]string{labelRun: it.r.s.runID})
		if err != nil {
			return fmt.Errorf("build the %d MB image in A: %w", size, err)
		}
		it.builtA = append(it.builtA, id)
		r.say("transfers of a %d MB image (%s), %d repetitions", size, shortID(id), reps)
		toB := newTimedFetcher(it.c.node.Host(), it.a.peer, it.storeB)
		sink := &discardStore{id: id}
		toSink := newTimedFetcher(it.c.node.Host(), it.a.peer, sink)
		var streamBytes int64
		fetch := func(f *timedFetcher) (int64, time.Duration, error) { return f.fetch(ctx, id) }
		ways := []struct {
			name string
			do   func() (int64, time.Duration, error)
			// after, when set, undoes what do left (the image in B).
			after func() error
			rates []float64
		}{
			{name: "direct", do: func() (int64, time.Duration, error) { return directPipe(ctx, it.storeA, it.storeB, id) },
				after: func() error { return it.removeFromB(ctx, id) }},
			{name: "network", do: func() (int64, time.Duration, error) { return fetch(toB) },
				after: func() error { return it.removeFromB(ctx, id) }},
			{name: "sink", do: func() (int64, time.Duration, error) {
				nb, took, err := fetch(toSink)
				sink.loaded = false
				return nb, took, err
			}},
			{name: "halves", do: func() (int64, time.Duration, error) { return it.halves(ctx, id) },
				after: func() error { return it.removeFromB(ctx, id) }},
		}
		var saveRates, loadRates []float64
		for i := range reps {
			for j := range ways {
				w := &ways[(i+j)%len(ways)]
				nb, took, err := w.do()
				if w.after != nil {
					if aerr := w.after(); err == nil {
						err = aerr
					}
				}
				if err != nil {
					r.failf("%d MB image, repetition %d, %s: %v", size, i+1, w.name, err)
					continue
				}
				if w.name == "halves" {
					// took is the load; the save's rate was noted by halves.
					saveRates = append(saveRates, it.lastSave)
					loadRates = append(loadRates, mibps(nb, took))
					continue
				}
				if w.name != "sink" {
					streamBytes = nb
				}
				w.rates = append(w.rates, mibps(nb, took))
			}
		}
		direct, network, sinkRates := ways[0].rates, ways[1].rates, ways[2].rates
		name := fmt.Sprintf("%d MB image (docker save stream %.1f MB), A → B", size, float64(streamBytes)/1e6)
		base := &Baseline{Name: "docker save from A piped into docker load in B, median", Value: median(direct), Unit: "MiB/s"}
		r.fig(Figure{Name: name + " through the network, median", Value: median(network), Unit: "MiB/s",
			Samples: len(network), Target: ge(100, ">= 100 MiB/s"), Baseline: base})
		r.fig(Figure{Name: name + " through the network / direct pipe", Value: 100 * median(network) / median(direct), Unit: "%",
			Samples: len(network), Target: ge(50, ">= 50% of the direct pipe"), Baseline: base})
		r.fig(Figure{Name: fmt.Sprintf("%d MB image, A through the network into a store that discards it (no docker load), median", size),
			Value: median(sinkRates), Unit: "MiB/s", Samples: len(sinkRates),
			Baseline: &Baseline{Name: "docker save from A alone, into memory, median", Value: median(saveRates), Unit: "MiB/s"}})
		r.fig(Figure{Name: fmt.Sprintf("%d MB image, docker load in B alone, from memory, median", size),
			Value: median(loadRates), Unit: "MiB/s", Samples: len(loadRates)})
		if err := it.cliRemove(ctx, it.cliA, id); err == nil {
			it.builtA = slices.DeleteFunc(it.builtA, func(s string) bool { return s == id })
		}
	}
	r.notef("Transfers: each image holds one file of random bytes (no compression or deduplication can help), built FROM scratch in A. " +
		"\"Through the network\" is images.Fetcher, the code allocator img-b runs when it lacks an image, run in this process on its client node " +
		"(under the network's PSK) against allocator img-a's image server (a separate process reading A), loading into B and checking the ID; " +
		"timed from Fetch to its return, bytes from its transfer metric. The direct pipe is the same store calls without the network: " +
		"A's ImageSave stream read straight into B's ImageLoad in this process. \"Into a store that discards it\" is the same fetch with a " +
		"store that reads the stream and drops it: the protocol and A's docker save, without B's docker load. The two halves alone: A's " +
		"docker save read into memory, then B's docker load from that memory. Each repetition runs the four ways, starting with a different " +
		"one each time; the image is removed from B after each.")
	return nil
}

// halves times A's docker save into memory, then B's docker load from
// that memory: it returns the load's bytes and time, and leaves the
// save's rate in it.lastSave.
func (it *imageRun) halves(ctx context.Context, id string) (int64, time.Duration, error) {
	start := time.Now()
	rc, err := it.storeA.Save(ctx, id)
	if err != nil {
		return 0, 0, err
	}
	var buf bytes.Buffer
	_, err = io.Copy(&buf, rc)
	rc.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("save: %w", err)
	}
	it.lastSave = mibps(int64(buf.Len()), time.Since(start))
	n := int64(buf.Len())
	start = time.Now()
	ids, err := it.storeB.Load(ctx, &buf)
	took := time.Since(start)
	if err == nil && !slices.Contains(ids, id) {
		err = fmt.Errorf("daemon B loaded %v, not %s", ids, id)
	}
	return n, took, err
}

// discardStore is a Store that reads an image stream and drops it: a fetch
// into it costs what the protocol and the sender cost, without a docker
// load.
type discardStore struct {
	id     string
	loaded bool
}

var _ images.Store = (*discardStore)(nil)

func (d *discardStore) Size(context.Context, string) (int64, error) {
	if d.loaded {
		return 1, nil
	}
	return 0, images.ErrNotHeld
}

func (d *discardStore) Save(context.Context, string) (io.ReadCloser, error) {
	return nil, images.ErrNotHeld
}

func (d *discardStore) Load(_ context.Context, r io.Reader) ([]string, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	d.loaded = true
	return []string{d.id}, nil
}

func (d *discardStore) Remove(context.Context, string) error           { d.loaded = false; return nil }
func (d *discardStore) List(context.Context) ([]string, error)         { return nil, nil }
func (d *discardStore) InUse(context.Context) (map[string]bool, error) { return nil, nil }

// coldImage is an image of the cold-start part: hello and the proxy, as
// registry-cli add builds it, with payloadMB of random bytes beside them.
type coldImage struct {
	payloadMB int
}

// coldStarts measures part b.
func (it *imageRun) coldStarts(ctx context.Context) error {
	r := it.r
	cp, err := it.n.startProxy(ctx, "client-proxy")
	if err != nil {
		return err
	}
	kinds := []coldImage{{payloadMB: 0}}
	if !r.quick() {
		kinds = append(kinds, coldImage{payloadMB: 20})
	}
	hc := newHTTPClient(2 * time.Minute)
	defer hc.CloseIdleConnections()
	for _, k := range kinds {
		if err := it.coldStart(ctx, hc, cp, k); err != nil {
			return err
		}
	}
	r.notef("Cold start: the time from sending the GET to the client proxy until its whole answer arrived, for a service name never used " +
		"before (as in the coldstart scenario). The service asks for 0.8 CPU, more than img-a has (0.5), so the proxy has every instance started on img-b. " +
		"\"Image missing\": img-b's daemon (B) lacks the image, so img-b looks its holders up in the DHT and fetches it from img-a before it starts " +
		"the container. \"Image present\": the next fresh name, right after, with the image in B. The image is removed from B after each pair. " +
		"The services are registered with registry-cli add -replicas 0 (built in A); img-a announces the image once told it holds it (an " +
		"images.Push that it answers \"have\"). The smallest hello image is the proxy and hello binaries, 32 MB: no smaller runnable image exists.")
	return nil
}

func (it *imageRun) coldStart(ctx context.Context, hc *http.Client, cp *clientProxy, k coldImage) error {
	r, n := it.r, it.n
	runs := r.pick(5, 2)
	dir := n.s.o.bin
	copies := `[["hello","hello"]]`
	if k.payloadMB > 0 {
		dir = filepath.Join(n.dir, fmt.Sprintf("cold-%dmb", k.payloadMB))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		hello, err := os.ReadFile(n.bin("hello"))
		if err != nil {
			return err
		}
		payload := make([]byte, k.payloadMB*1_000_000)
		_, _ = rand.Read(payload)
		if err := os.WriteFile(filepath.Join(dir, "hello"), hello, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "payload"), payload, 0o644); err != nil {
			return err
		}
		copies = `[["hello","hello"],["payload","payload"]]`
	}
	cfg := filepath.Join(n.dir, fmt.Sprintf("cold-%dmb.json", k.payloadMB))
	conf := `{"NetworkSoftReq":{"RTT":20},"NetworkHardReq":{"RTT":50},"CpuReq":800,"MemoryReq":32,` +
		`"DockerConf":{"From":"scratch","Copy":` + copies + `,"Cmd":"/app/hello"}}`
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return err
	}
	prefix := fmt.Sprintf("img-cold-%d", k.payloadMB)
	var miss, have []string
	for i := 1; i <= runs; i++ {
		miss = append(miss, fmt.Sprintf("%s-miss-%d", prefix, i))
		have = append(have, fmt.Sprintf("%s-have-%d", prefix, i))
	}
	tag := fmt.Sprintf("physarum-bench/images-cold-%d:%s", k.payloadMB, n.s.runID)
	start := time.Now()
	if _, err := n.cli(ctx, "add", "-replicas", "0", "-dir", dir, "-custom-proxy", n.bin("proxy"), cfg, tag, miss[0]); err != nil {
		return err
	}
	it.builtA = append(it.builtA, tag)
	if err := n.copyService(ctx, miss[0], append(miss[1:], have...)...); err != nil {
		return err
	}
	insp, err := it.cliA.ImageInspect(ctx, tag)
	if err != nil {
		return err
	}
	id := insp.ID
	if err := it.announceOnA(ctx, id); err != nil {
		return err
	}
	if err := it.removeFromB(ctx, id); err != nil {
		return err
	}
	r.say("cold starts with a hello image of %d MB payload (%s, built and announced in %s), %d runs", k.payloadMB, shortID(id), since(start), runs)

	var cold, warmStart, warm dist
	var direct []float64
	var streamBytes int64
	for i := range runs {
		nb, took, err := directPipe(ctx, it.storeA, it.storeB, id)
		if err != nil {
			r.failf("direct pipe, run %d: %v", i+1, err)
		} else {
			streamBytes = nb
			direct = append(direct, mibps(nb, took))
		}
		if err := it.removeFromB(ctx, id); err != nil {
			return err
		}
		for j, name := range []string{miss[i], have[i]} {
			url := cp.url + "/" + name + "/"
			took, err := do(ctx, hc, http.MethodGet, url, nil)
			if err != nil {
				r.failf("%s: first request: %v", name, err)
				continue
			}
			if j == 0 {
				cold = append(cold, took)
			} else {
				warmStart = append(warmStart, took)
			}
			if i == 0 && j == 1 {
				for range r.pick(100, 30) {
					t, err := do(ctx, hc, http.MethodGet, url, nil)
					if err != nil {
						return fmt.Errorf("warm request: %w", err)
					}
					warm = append(warm, t)
				}
			}
			if err := it.stopAll(ctx, name); err != nil {
				r.failf("%v", err)
			}
		}
		if err := it.removeFromB(ctx, id); err != nil {
			return err
		}
	}
	size := fmt.Sprintf("%.0f MB image", float64(streamBytes)/1e6)
	if k.payloadMB > 0 {
		size = fmt.Sprintf("%.0f MB image (hello + %d MB payload)", float64(streamBytes)/1e6, k.payloadMB)
	}
	present := &Baseline{Name: "image present, p50", Value: msec(warmStart.p50()), Unit: "ms"}
	r.fig(Figure{Name: "first request, image missing on the node, " + size + ", p50", Value: msec(cold.p50()), Unit: "ms",
		Samples: len(cold), Target: lt(2000, "< 2 s"), Baseline: present})
	r.fig(Figure{Name: "first request, image missing on the node, " + size + ", max", Value: msec(cold.at(100)), Unit: "ms",
		Samples: len(cold), Baseline: &Baseline{Name: "image present, max", Value: msec(warmStart.at(100)), Unit: "ms"}})
	r.fig(Figure{Name: "first request, image present, " + size + ", p50", Value: msec(warmStart.p50()), Unit: "ms",
		Samples: len(warmStart), Baseline: &Baseline{Name: "warm request p50", Value: msec(warm.p50()), Unit: "ms"}})
	rates, fetchSecs := fetchedRates(it.b.p.ErrFile, id)
	r.fig(Figure{Name: "img-b fetching the " + size + " from img-a (its log), median", Value: median(rates), Unit: "MiB/s",
		Samples: len(rates), Baseline: &Baseline{Name: "direct pipe A → B, median", Value: median(direct), Unit: "MiB/s"}})
	if len(fetchSecs) > 0 && len(cold) > 0 {
		r.notef("Cold start with the %s: img-b's fetches took %s s (its log); the first requests with the image missing took %s s.",
			size, joinFloats(fetchSecs, 2), joinFloats(secsOf(cold), 2))
	}
	return nil
}

// announceOnA has allocator img-a announce image id now (it holds it; a
// push it answers "have" makes it announce at once, as registry-cli add
// does for a holder), and waits until the DHT names it.
func (it *imageRun) announceOnA(ctx context.Context, id string) error {
	res, err := images.Push(ctx, it.c.node.Host(), it.a.peer, it.storeA, id, 0, nil)
	if err != nil {
		return fmt.Errorf("tell img-a it holds %s: %w", shortID(id), err)
	}
	if !res.Had {
		return fmt.Errorf("img-a did not hold %s: the push sent it", shortID(id))
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		infos, err := it.c.node.FindPeers(ctx, images.Namespace(id))
		if err == nil && slices.ContainsFunc(infos, func(ai peer.AddrInfo) bool { return ai.ID == it.a.peer }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the DHT does not name img-a as a holder of %s after 30 s", shortID(id))
}

// stopAll stops every instance of service.
func (it *imageRun) stopAll(ctx context.Context, service string) error {
	ins, err := it.c.reg.ListInstances(ctx, service)
	if err != nil {
		return err
	}
	var errs []error
	for i := range ins {
		if ins[i].Node != it.b.peer.String() || ins[i].Runtime != "docker" {
			errs = append(errs, fmt.Errorf("%s: instance %s ran on %s under %s, not on img-b under docker",
				service, ins[i].ID, ins[i].Node, ins[i].Runtime))
		}
		if err := it.c.stopInstance(ctx, &ins[i]); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", ins[i].ID, err))
		}
	}
	return errors.Join(errs...)
}

// removeFromB removes image id from B, waiting for a container that used
// it to be gone.
func (it *imageRun) removeFromB(ctx context.Context, id string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := it.cliRemove(ctx, it.cliB, id)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove %s from B: %w", shortID(id), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove %s from B: %w", shortID(id), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cliRemove removes an image, and counts an absent one as removed.
func (it *imageRun) cliRemove(ctx context.Context, cli *docker.Client, ref string) error {
	_, err := cli.ImageRemove(ctx, ref, docker.ImageRemoveOptions{Force: true, PruneChildren: true})
	if err != nil && strings.Contains(strings.ToLower(err.Error()), "no such image") {
		return nil
	}
	return err
}

// removeBuilt removes what the scenario built in A (B goes with its
// daemon).
func (it *imageRun) removeBuilt() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ref := range it.builtA {
		if err := it.cliRemove(ctx, it.cliA, ref); err != nil {
			it.r.record("remove image %s from this machine's daemon: %v", ref, err)
		}
	}
	it.builtA = nil
}

// demoServices are the services make demo builds images of.
var demoServices = []string{"hello", "calculator", "sensor", "aggregator", "analytics"}

// dedup computes part c from the demo's images, built in B as make demo
// builds them (registry-cli add -dir bin).
func (it *imageRun) dedup(ctx context.Context, hostB string) error {
	r, n := it.r, it.n
	type imageLayers struct {
		service string
		stream  int64
		layers  []layer
	}
	var all []imageLayers
	for _, svc := range demoServices {
		cfg, err := n.serviceConfig(svc, "docker", 0, 0)
		if err != nil {
			return err
		}
		tag := fmt.Sprintf("physarum-bench/dedup-%s:%s", svc, n.s.runID)
		if _, err := n.cliEnv(ctx, []string{"DOCKER_HOST=" + hostB}, "add", "-no-add", "-dir", n.s.o.bin,
			"-custom-proxy", n.bin("proxy"), cfg, tag, svc); err != nil {
			return fmt.Errorf("build the %s demo image in B: %w", svc, err)
		}
		stream, layers, err := saveLayers(ctx, it.cliB, tag)
		if err != nil {
			return fmt.Errorf("read the layers of %s: %w", tag, err)
		}
		all = append(all, imageLayers{svc, stream, layers})
	}
	var today, deduped int64
	sent := map[string]bool{}
	shared := map[string]int{}
	sizeOf := map[string]int64{}
	for _, im := range all {
		today += im.stream
		deduped += im.stream
		for _, l := range im.layers {
			shared[l.diffID]++
			sizeOf[l.diffID] = l.size
			if sent[l.diffID] {
				deduped -= l.size
			}
			sent[l.diffID] = true
		}
	}
	proxySize := int64(-1)
	if st, err := os.Stat(n.bin("proxy")); err == nil {
		proxySize = st.Size()
	}
	var sharedText []string
	for _, id := range slices.Sorted(maps.Keys(shared)) {
		if shared[id] < 2 {
			continue
		}
		what := ""
		if d := sizeOf[id] - proxySize; d >= 0 && d < 64<<10 {
			what = ", the proxy binary"
		}
		sharedText = append(sharedText, fmt.Sprintf("%s (%s%s) in %d of %d images", shortID(id), fmtBytes(sizeOf[id]), what, shared[id], len(all)))
	}
	// A node that holds one demo image and needs another.
	further := float64(today-all[0].stream) / float64(len(all)-1) / 1e6
	furtherDedup := float64(deduped-all[0].stream) / float64(len(all)-1) / 1e6
	var per []string
	for _, im := range all {
		per = append(per, fmt.Sprintf("%s %.1f MB", im.service, float64(im.stream)/1e6))
	}
	base := &Baseline{Name: "whole docker save streams (today)", Value: float64(today) / 1e6, Unit: "MB"}
	r.fig(Figure{Name: fmt.Sprintf("the %d demo images to a node that holds none, each layer sent once", len(all)),
		Value: float64(deduped) / 1e6, Unit: "MB", Baseline: base})
	r.fig(Figure{Name: "saved by layer deduplication", Value: 100 * float64(today-deduped) / float64(today), Unit: "%", Baseline: base})
	r.notef("Layer deduplication (not done on the wire today): the demo images, built as make demo builds them (registry-cli add -dir bin, "+
		"FROM scratch, the proxy copied first), have docker save streams of %s. Layers shared: %s. A node that holds one demo image and "+
		"needs another receives %.1f MB today, %.1f MB with deduplication (on average over the other four). Each layer's size is its entry "+
		"in the docker save stream (uncompressed tar, what travels).", strings.Join(per, ", "), strings.Join(sharedText, "; "), further, furtherDedup)
	return nil
}

// layer is one layer of an image: its diff ID and its size in the image's
// docker save stream.
type layer struct {
	diffID string
	size   int64
}

// saveLayers reads the docker save stream of ref: its size, and the size
// of each layer in it, matched to the image's diff IDs through the
// stream's manifest.json (the layers are listed in the same order).
func saveLayers(ctx context.Context, cli *docker.Client, ref string) (int64, []layer, error) {
	insp, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		return 0, nil, err
	}
	rc, err := cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return 0, nil, err
	}
	defer rc.Close()
	cr := &countingReader{r: rc}
	tr := tar.NewReader(cr)
	sizes := map[string]int64{}
	links := map[string]string{}
	var manifest []struct{ Layers []string }
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, nil, err
		}
		switch {
		case h.Name == "manifest.json":
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				return 0, nil, fmt.Errorf("manifest.json: %w", err)
			}
		case h.Typeflag == tar.TypeSymlink:
			links[h.Name] = filepath.Join(filepath.Dir(h.Name), h.Linkname)
		case h.Typeflag == tar.TypeReg:
			sizes[h.Name] = h.Size
		}
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return 0, nil, err
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != len(insp.RootFS.Layers) {
		return 0, nil, fmt.Errorf("manifest.json lists %d images; want 1 with the %d layers of the image", len(manifest), len(insp.RootFS.Layers))
	}
	var out []layer
	for i, path := range manifest[0].Layers {
		if to, ok := links[path]; ok {
			path = to
		}
		out = append(out, layer{diffID: insp.RootFS.Layers[i], size: sizes[path]})
	}
	return cr.n, out, nil
}

// directPipe is the baseline of a transfer: A's docker save stream read
// straight into B's docker load, through the same store calls a transfer
// makes. It returns the stream's size and how long it took until B had
// loaded the image.
func directPipe(ctx context.Context, from, to images.Store, id string) (int64, time.Duration, error) {
	start := time.Now()
	rc, err := from.Save(ctx, id)
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	cr := &countingReader{r: rc}
	ids, err := to.Load(ctx, cr)
	took := time.Since(start)
	if err != nil {
		return cr.n, took, fmt.Errorf("direct pipe: %w", err)
	}
	if !slices.Contains(ids, id) {
		return cr.n, took, fmt.Errorf("direct pipe: B loaded %v, not %s", ids, id)
	}
	return cr.n, took, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// timedFetcher is an images.Fetcher from one holder, with the metrics
// that count the bytes it takes.
type timedFetcher struct {
	f   *images.Fetcher
	reg *prometheus.Registry
}

func newTimedFetcher(h host.Host, holder peer.ID, store images.Store) *timedFetcher {
	reg := prometheus.NewRegistry()
	return &timedFetcher{
		f:   images.NewFetcher(h, fixedHolders{holder}, store, images.FetcherOptions{Metrics: images.NewMetrics(reg)}),
		reg: reg,
	}
}

// fetch fetches id and returns the bytes taken and the time it took.
func (t *timedFetcher) fetch(ctx context.Context, id string) (int64, time.Duration, error) {
	const bytesIn = "physarum_allocator_image_transfer_bytes_total"
	before := counterValue(t.reg, bytesIn, "direction", "in")
	start := time.Now()
	err := t.f.Fetch(ctx, id)
	took := time.Since(start)
	return int64(counterValue(t.reg, bytesIn, "direction", "in") - before), took, err
}

// fixedHolders names the holders of every image: the fetch goes to them
// without a DHT lookup.
type fixedHolders []peer.ID

func (f fixedHolders) Holders(context.Context, string) ([]peer.ID, error) { return f, nil }

// counterValue reads a counter of reg with the given label value (0 when
// absent).
func counterValue(reg *prometheus.Registry, name, label, value string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// fetchedRates reads an allocator's log for its "fetched image" lines of
// image id: the rate (MiB/s) and the time (s) of each.
func fetchedRates(logFile, id string) (rates, seconds []float64) {
	for _, line := range readLines(logFile) {
		if !strings.Contains(line, `msg="fetched image"`) {
			continue
		}
		kv := logging.ParseText(line)
		if kv["image"] != id {
			continue
		}
		nb, err1 := strconv.ParseInt(kv["bytes"], 10, 64)
		s, err2 := strconv.ParseFloat(kv["seconds"], 64)
		if err1 != nil || err2 != nil || s <= 0 {
			continue
		}
		rates = append(rates, float64(nb)/(1<<20)/s)
		seconds = append(seconds, s)
	}
	return rates, seconds
}

// storageDriverOf says which storage driver a daemon uses.
func storageDriverOf(ctx context.Context, cli *docker.Client) string {
	info, err := cli.Info(ctx, docker.InfoOptions{})
	if err != nil || info.Info.Driver == "" {
		return "unknown"
	}
	return info.Info.Driver
}

func mibps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return notMeasured
	}
	return float64(n) / (1 << 20) / d.Seconds()
}

// median is the median of vs, notMeasured when there are none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return notMeasured
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secsOf(d dist) []float64 {
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = v.Seconds()
	}
	return out
}

func joinFloats(vs []float64, prec int) string {
	var s []string
	for _, v := range vs {
		s = append(s, strconv.FormatFloat(v, 'f', prec, 64))
	}
	return strings.Join(s, ", ")
}

// fmtBytes formats a size in MB, or in KB below 0.1 MB.
func fmtBytes(n int64) string {
	if n < 100_000 {
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.2f MB", float64(n)/1e6)
}

// shortID abbreviates an image ID for messages.
func shortID(id string) string {
	if hex, ok := strings.CutPrefix(id, "sha256:"); ok && len(hex) > 12 {
		return hex[:12]
	}
	return id
}
