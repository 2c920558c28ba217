package forward

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"
)

// The benchmarks compare ways to the same upstream service, in the
// same run:
//
//   - direct: an http.Client calls the service;
//   - pair: Transport.RoundTrip -> libp2p stream -> Server -> service
//     (the transport layer alone);
//   - proxy: an http.Client calls a client proxy whose handler runs
//     SplitPath and Transport.Forward, then as pair (what a user of a
//     client proxy gets);
//   - stream (throughput only): the same bytes echoed on a bare libp2p
//     stream between the same two nodes, no HTTP at all: the ceiling the
//     private network (PSK and Noise encryption, yamux) sets for the pair;
//   - roundtripper and std (BenchmarkVsStdTransport only): an http.Client
//     over Transport.RoundTripper, and over net/http's own http.Transport
//     on streams to the same Server.
//
// Each reports ns/op, requests or bytes per second, and the median (p50)
// and 99th percentile (p99) latency of one request in microseconds.

// benchEnv is a pair plus a direct client, shared by sub-benchmarks.
type benchEnv struct {
	p      *pair
	direct *http.Client
	// rt is an http.Client over the Transport's RoundTripper.
	rt *http.Client
	// std is net/http's own client over streams of Protocol to the
	// Server's peer (see BenchmarkVsStdTransport).
	std *http.Client
}

func newBenchEnv(b *testing.B, upstream http.Handler) *benchEnv {
	b.Helper()
	p := startPair(b, upstream, pairConfig{})
	tr := &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	p.http.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	std := &http.Transport{
		Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 64,
		// Every connection is a new stream to the Server's peer, whatever
		// the URL's host.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return gostream.Dial(ctx, p.client.Host(), p.server.ID(), Protocol)
		},
	}
	b.Cleanup(std.CloseIdleConnections)
	return &benchEnv{
		p: p, direct: &http.Client{Transport: tr},
		rt: &http.Client{Transport: p.tr.RoundTripper()}, std: &http.Client{Transport: std},
	}
}

// do sends one request the given way and reads the whole answer.
func (e *benchEnv) do(b *testing.B, way, method, path string, body []byte) {
	b.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var (
		resp *http.Response
		err  error
	)
	switch way {
	case "direct":
		req, _ := http.NewRequest(method, e.p.upstream.URL+path, rd)
		resp, err = e.direct.Do(req)
	case "pair":
		req, _ := http.NewRequest(method, "http://svc"+path, rd)
		resp, err = e.p.tr.RoundTrip(b.Context(), e.p.server.ID(), req)
	case "proxy":
		req, _ := http.NewRequest(method, e.p.url("/svc"+path), rd)
		resp, err = e.p.http.Do(req)
	case "roundtripper":
		req, _ := http.NewRequestWithContext(WithPeer(b.Context(), e.p.server.ID()), method, "http://svc"+path, rd)
		resp, err = e.rt.Do(req)
	case "std":
		req, _ := http.NewRequest(method, "http://svc"+path, rd)
		resp, err = e.std.Do(req)
	}
	if err != nil {
		b.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("%s %s: status %d, %v", way, path, resp.StatusCode, err)
	}
}

// run calls one b.N times from clients goroutines and reports latency
// percentiles.
func run(b *testing.B, clients int, one func()) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				one()
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatency(b, "", lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}

func reportLatency(b *testing.B, prefix string, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	pct := func(p float64) float64 {
		return float64(s[min(len(s)-1, int(p*float64(len(s))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), prefix+"p50-µs")
	b.ReportMetric(pct(0.99), prefix+"p99-µs")
}

func smallService() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello, client")
	})
}

// BenchmarkSmallGET is a small GET with 1 and 8 concurrent clients.
func BenchmarkSmallGET(b *testing.B) {
	e := newBenchEnv(b, smallService())
	for _, clients := range []int{1, 8} {
		for _, way := range []string{"direct", "pair", "proxy"} {
			b.Run(fmt.Sprintf("clients=%d/%s", clients, way), func(b *testing.B) {
				run(b, clients, func() { e.do(b, way, http.MethodGet, "/small?x=1", nil) })
			})
		}
	}
}

// BenchmarkAddedLatency alternates a direct GET and the same GET through
// the pair (and through a client proxy), one client, so that both see the
// same machine state, and reports what the pair adds at the median and at
// p99.
func BenchmarkAddedLatency(b *testing.B) {
	e := newBenchEnv(b, smallService())
	for _, way := range []string{"pair", "proxy"} {
		b.Run(way, func(b *testing.B) {
			direct := make([]time.Duration, 0, b.N)
			through := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				e.do(b, "direct", http.MethodGet, "/small", nil)
				t1 := time.Now()
				e.do(b, way, http.MethodGet, "/small", nil)
				direct = append(direct, t1.Sub(t0))
				through = append(through, time.Since(t1))
			}
			reportLatency(b, "direct-", direct)
			reportLatency(b, way+"-", through)
			slices.Sort(direct)
			slices.Sort(through)
			at := func(s []time.Duration, p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
			b.ReportMetric(float64((at(through, 0.5)-at(direct, 0.5)).Nanoseconds())/1e3, "added-p50-µs")
			b.ReportMetric(float64((at(through, 0.99)-at(direct, 0.99)).Nanoseconds())/1e3, "added-p99-µs")
		})
	}
}

// echoService sends the request body back as it reads it.
func echoService() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		if r.ContentLength >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
		}
		_, _ = io.Copy(w, r.Body)
	})
}

// BenchmarkThroughput POSTs bodies of 1 KiB and 1 MiB that the service
// echoes; bytes/s counts the request body (as much comes back).
func BenchmarkThroughput(b *testing.B) {
	e := newBenchEnv(b, echoService())
	echoes := startStreamEcho(b, e)
	for _, size := range []int{1 << 10, 1 << 20} {
		body := bytes.Repeat([]byte("physarum"), size/8)
		for _, clients := range []int{1, 8} {
			for _, way := range []string{"direct", "pair", "proxy", "stream"} {
				b.Run(fmt.Sprintf("size=%dKiB/clients=%d/%s", size>>10, clients, way), func(b *testing.B) {
					b.SetBytes(int64(size))
					if way == "stream" {
						run(b, clients, func() { echoes.echo(b, body) })
						return
					}
					run(b, clients, func() { e.do(b, way, http.MethodPost, "/echo", body) })
				})
			}
		}
	}
}

const benchEchoProtocol = "/physarum/bench-echo/1.0.0"

// streamEcho echoes length-prefixed messages on bare streams, one stream
// per client kept in a pool.
type streamEcho struct {
	e    *benchEnv
	mu   sync.Mutex
	idle []network.Stream
}

func startStreamEcho(b *testing.B, e *benchEnv) *streamEcho {
	b.Helper()
	h := e.p.server.Host()
	h.SetStreamHandler(benchEchoProtocol, func(st network.Stream) {
		defer st.Close()
		var n [8]byte
		for {
			if _, err := io.ReadFull(st, n[:]); err != nil {
				return
			}
			if _, err := io.CopyN(st, st, int64(binary.BigEndian.Uint64(n[:]))); err != nil {
				return
			}
		}
	})
	se := &streamEcho{e: e}
	b.Cleanup(func() {
		h.RemoveStreamHandler(benchEchoProtocol)
		for _, st := range se.idle {
			_ = st.Reset()
		}
	})
	return se
}

func (se *streamEcho) echo(b *testing.B, msg []byte) {
	b.Helper()
	se.mu.Lock()
	var st network.Stream
	if len(se.idle) > 0 {
		st = se.idle[len(se.idle)-1]
		se.idle = se.idle[:len(se.idle)-1]
	}
	se.mu.Unlock()
	if st == nil {
		var err error
		if st, err = se.e.p.client.Host().NewStream(b.Context(), se.e.p.server.ID(), benchEchoProtocol); err != nil {
			b.Fatal(err)
		}
	}
	werr := make(chan error, 1)
	go func() {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(msg)))
		_, err := st.Write(n[:])
		if err == nil {
			_, err = st.Write(msg)
		}
		werr <- err
	}()
	bufp := copyBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(io.Discard, io.LimitReader(st, int64(len(msg))), *bufp)
	copyBufs.Put(bufp)
	if err == nil {
		err = <-werr
	}
	if err != nil {
		b.Fatal(err)
	}
	se.mu.Lock()
	se.idle = append(se.idle, st)
	se.mu.Unlock()
}

// BenchmarkVsDirect measures what the targets of SPEC.md section 10 are
// about: the pair against direct calls under the same load. A machine
// shared with other work changes speed from one second to the next, so
// instead of one sub-benchmark per way it alternates short phases of
// direct, pair and proxy requests (each phase free-running with the given
// number of clients) and reports each way's rate and latency, the ratio of
// the pair's and the proxy's rates to direct ("pair-%", "proxy-%"), and
// the latency the pair adds at the median and p99.
func BenchmarkVsDirect(b *testing.B) {
	mux := http.NewServeMux()
	mux.Handle("/small", smallService())
	mux.Handle("/echo", echoService())
	e := newBenchEnv(b, mux)
	for _, wl := range []struct {
		name  string
		size  int
		phase time.Duration
	}{
		{"small-GET", 0, 30 * time.Millisecond},
		{"body=1KiB", 1 << 10, 30 * time.Millisecond},
		{"body=1MiB", 1 << 20, 150 * time.Millisecond},
	} {
		var body []byte
		method, path := http.MethodGet, "/small"
		if wl.size > 0 {
			body = bytes.Repeat([]byte("physarum"), wl.size/8)
			method, path = http.MethodPost, "/echo"
		}
		for _, clients := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/clients=%d", wl.name, clients), func(b *testing.B) {
				ways := []string{"direct", "pair", "proxy"}
				stats := make(map[string]*phaseStats)
				for _, w := range ways {
					stats[w] = &phaseStats{}
				}
				for b.Loop() {
					for _, w := range ways {
						stats[w].phase(clients, wl.phase, func() { e.do(b, w, method, path, body) })
					}
				}
				rate := func(w string) float64 { return float64(len(stats[w].lat)) / stats[w].elapsed.Seconds() }
				for _, w := range ways {
					reportLatency(b, w+"-", stats[w].lat)
					if wl.size > 0 {
						b.ReportMetric(rate(w)*float64(wl.size)/1e6, w+"-MB/s")
					} else {
						b.ReportMetric(rate(w), w+"-req/s")
					}
				}
				b.ReportMetric(100*rate("pair")/rate("direct"), "pair-%")
				b.ReportMetric(100*rate("proxy")/rate("direct"), "proxy-%")
				d, p := slices.Sorted(slices.Values(stats["direct"].lat)), slices.Sorted(slices.Values(stats["pair"].lat))
				at := func(s []time.Duration, q float64) float64 {
					return float64(s[min(len(s)-1, int(q*float64(len(s))))].Nanoseconds()) / 1e3
				}
				b.ReportMetric(at(p, 0.5)-at(d, 0.5), "pair-added-p50-µs")
				b.ReportMetric(at(p, 0.99)-at(d, 0.99), "pair-added-p99-µs")
			})
		}
	}
}

// phaseStats accumulates the phases of one way.
type phaseStats struct {
	lat     []time.Duration
	elapsed time.Duration
}

// phase runs one from clients goroutines until d has passed.
func (s *phaseStats) phase(clients int, d time.Duration, one func()) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				one()
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			s.lat = append(s.lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.elapsed += time.Since(start)
}

// BenchmarkVsStdTransport compares, in the same run and against the same
// Server, the Transport's own HTTP/1.1 client with net/http's:
//
//   - pair: Transport.RoundTrip, the hand-written framing;
//   - roundtripper: an http.Client over Transport.RoundTripper (the same,
//     plus http.Client's layer);
//   - std: an http.Client over an http.Transport whose DialContext opens a
//     stream of Protocol to the Server's peer, made a net.Conn by
//     go-libp2p's gostream: net/http's framing, connection pool and
//     per-connection goroutines on the same streams.
//
// Workloads: a small GET, and a 1 MiB POST echoed back (MB/s counts the
// request body), with 1 and 8 concurrent clients. allocs/op counts both
// sides, the Server's included.
func BenchmarkVsStdTransport(b *testing.B) {
	mux := http.NewServeMux()
	mux.Handle("/small", smallService())
	mux.Handle("/echo", echoService())
	e := newBenchEnv(b, mux)
	for _, wl := range []struct {
		name string
		size int
	}{{"small-GET", 0}, {"body=1MiB", 1 << 20}} {
		var body []byte
		method, path := http.MethodGet, "/small"
		if wl.size > 0 {
			body = bytes.Repeat([]byte("physarum"), wl.size/8)
			method, path = http.MethodPost, "/echo"
		}
		for _, clients := range []int{1, 8} {
			for _, way := range []string{"pair", "roundtripper", "std"} {
				b.Run(fmt.Sprintf("%s/clients=%d/%s", wl.name, clients, way), func(b *testing.B) {
					b.ReportAllocs()
					if wl.size > 0 {
						b.SetBytes(int64(wl.size))
					}
					run(b, clients, func() { e.do(b, way, method, path, body) })
				})
			}
		}
	}
}
