package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	lpnet "github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/keys"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/psk"
)

// The stream protocols and ready line of demos/bench/streamecho, the
// ceiling scenario's second process (which holds the same values).
const (
	ceilingEchoProtocol = "/physarum/bench/echo/1.0.0"
	ceilingSinkProtocol = "/physarum/bench/sink/1.0.0"
	ceilingReady        = "streamecho ready"
)

const (
	// ceilingSmall is the size of a small message, each way.
	ceilingSmall = 100
	// ceilingBig is the size of a large message, each way.
	ceilingBig = 1 << 20
	// ceilingStreams is the number of concurrent streams (and clients).
	ceilingStreams = 8
)

// Names of the ceiling's own figures, which the proxy's are divided by.
const (
	figCeilRTTp50 = "raw stream round trip, 100 B each way, 1 stream, p50"
	figCeilRTTp99 = "raw stream round trip, 100 B each way, 1 stream, p99"
	figCeilSmall1 = "raw stream round trips, 100 B each way, 1 stream"
	figCeilSmall8 = "raw stream round trips, 100 B each way, 8 streams"
	figCeilBig1   = "raw stream echo, 1 MiB messages, 1 stream (MiB/s sent; as much comes back)"
	figCeilBig8   = "raw stream echo, 1 MiB messages, 8 streams (MiB/s sent; as much comes back)"
	figCeilOneWay = "raw stream one way to a sink, 1 MiB writes, 1 stream"
)

const (
	// proxyScenario is the scenario whose figures are compared with the
	// ceiling, and ceilingHelper the second process's binary.
	proxyScenario = "proxy"
	ceilingHelper = "streamecho"
	// ceilingSetupTx is the scenario's setup, for results.md.
	ceilingSetupTx = "the bench process and one streamecho process (demos/bench/streamecho), each a libp2p node built " +
		"by common/p2p.New as every daemon's is (TCP, the network's PSK, the daemons' security transport and yamux; " +
		"streamecho through common/daemon.Start, as the daemons), on loopback, one connection between them; " +
		"the bench process dials and sends, streamecho echoes (64 KiB reads, each written back at once) or discards. " +
		"The two processes share the machine's 2 cores."
)

// runCeiling measures what the proxies' transport can carry at most: a raw
// libp2p stream under the network's PSK between two processes, with the
// daemons' own stack. Then, when the proxy scenario ran earlier in the same
// run, it gives each of the proxy pair's figures as a fraction of this
// ceiling beside its fraction of direct HTTP.
func runCeiling(ctx context.Context, r *run) error {
	bin := filepath.Join(r.s.o.bin, ceilingHelper)
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s not found in %s: run 'make build' first (or give -bin)", ceilingHelper, r.s.o.bin)
	}
	n, err := r.s.newNetwork(r, "ceiling", true)
	if err != nil {
		return err
	}
	r.sc.Setup = ceilingSetupTx
	addrFile := filepath.Join(n.dir, ceilingHelper+".addr")
	p, err := r.s.procs.spawn(n.dir, ceilingHelper, bin,
		[]string{"-ephemeral", "-listen", "/ip4/127.0.0.1/tcp/0", "-addr-file", addrFile, "-log-level", r.s.o.logLevel}, n.env)
	if err != nil {
		return err
	}
	defer func() {
		if p.Stop(5 * time.Second) {
			r.failf("streamecho did not exit within 5 s of SIGTERM and was killed")
		}
	}()
	addr, err := p.Ready(ctx, ceilingReady, 30*time.Second, addrFile)
	if err != nil {
		return err
	}
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return fmt.Errorf("streamecho address %q: %w", addr, err)
	}
	node, err := ceilingNode(n.pass)
	if err != nil {
		return err
	}
	defer node.Close()
	h := node.Host()
	if err := h.Connect(ctx, *ai); err != nil {
		return fmt.Errorf("connect to streamecho: %w", err)
	}
	var streams []*echoStream
	defer func() {
		for _, e := range streams {
			_ = e.s.Close()
		}
	}()
	for range ceilingStreams {
		s, err := h.NewStream(ctx, ai.ID, ceilingEchoProtocol)
		if err != nil {
			return fmt.Errorf("open an echo stream: %w", err)
		}
		streams = append(streams, &echoStream{s: s, buf: make([]byte, ceilingBig)})
	}
	// A stream blocked in a read does not see the context: reset every
	// stream when it ends, so that the scenario returns.
	stopWatch := context.AfterFunc(ctx, func() {
		for _, e := range streams {
			_ = e.s.Reset()
		}
	})
	defer stopWatch()
	conns := h.Network().ConnsToPeer(ai.ID)
	if len(conns) != 1 {
		r.notef("%d connections to streamecho (want 1): the streams were spread over them", len(conns))
	}
	sec := "?"
	if len(conns) > 0 {
		sec = string(conns[0].ConnState().Security) + ", muxer " + string(conns[0].ConnState().StreamMultiplexer)
	}
	r.say("streamecho pid %d, connected over %s; %d echo streams open", p.Pid(), sec, len(streams))

	small := bytes.Repeat([]byte("p"), ceilingSmall)
	big := bytes.Repeat([]byte("physarum"), ceilingBig/8)
	// Warm up every stream: yamux windows grow with use.
	for _, e := range streams {
		for range r.pick(200, 50) {
			if err := e.exchange(small); err != nil {
				return fmt.Errorf("warm-up, small: %w", err)
			}
		}
		for range r.pick(8, 3) {
			if err := e.exchange(big); err != nil {
				return fmt.Errorf("warm-up, 1 MiB: %w", err)
			}
		}
	}

	self := os.Getpid()
	// phasesOn runs phases of back-to-back exchanges of msg on the first k
	// streams, one client per stream, and returns them with the CPU both
	// processes used meanwhile.
	phasesOn := func(k, rounds int, d time.Duration, msg []byte) (*phases, string) {
		pool := make(chan *echoStream, k)
		for _, e := range streams[:k] {
			pool <- e
		}
		one := func() (time.Duration, error) {
			e := <-pool
			defer func() { pool <- e }()
			start := time.Now()
			err := e.exchange(msg)
			return time.Since(start), err
		}
		var cpu procCPU
		cpu.add("bench", self)
		cpu.add("streamecho", p.Pid())
		var ps phases
		cpu.during(func() {
			for range rounds {
				ps.phase(ctx, k, d, one)
			}
		})
		busy := fmt.Sprintf("CPU over the phases: bench process %.0f%% of a core, streamecho %.0f%%",
			100*cpu.spentBy("bench").Seconds()/ps.elapsed.Seconds(), 100*cpu.spentBy("streamecho").Seconds()/ps.elapsed.Seconds())
		return &ps, busy
	}

	own := map[string]float64{}
	rounds := r.pick(10, 3)
	for _, k := range []int{1, ceilingStreams} {
		r.say("small round trips (%d B each way), %s: %d rounds of 200 ms", ceilingSmall, streamsText(k), rounds)
		ps, busy := phasesOn(k, rounds, 200*time.Millisecond, small)
		checkPhases(r, "small round trips, "+streamsText(k), ps)
		name := figCeilSmall1
		if k > 1 {
			name = figCeilSmall8
		}
		own[name] = ps.rate()
		r.fig(Figure{Name: name, Value: ps.rate(), Unit: "round trips/s", Samples: len(ps.lat)})
		if k == 1 {
			own[figCeilRTTp50], own[figCeilRTTp99] = us(ps.lat.p50()), us(ps.lat.p99())
			r.fig(Figure{Name: figCeilRTTp50, Value: us(ps.lat.p50()), Unit: "µs", Samples: len(ps.lat)})
			r.fig(Figure{Name: figCeilRTTp99, Value: us(ps.lat.p99()), Unit: "µs", Samples: len(ps.lat)})
		} else {
			r.fig(Figure{Name: "raw stream round trip, 100 B each way, 8 streams, p50", Value: us(ps.lat.p50()), Unit: "µs", Samples: len(ps.lat)})
			r.fig(Figure{Name: "raw stream round trip, 100 B each way, 8 streams, p99", Value: us(ps.lat.p99()), Unit: "µs", Samples: len(ps.lat)})
		}
		r.notef("Small round trips, %s: %s.", streamsText(k), busy)
	}

	rounds = r.pick(6, 2)
	for _, k := range []int{1, ceilingStreams} {
		r.say("1 MiB echo, %s: %d rounds of 500 ms", streamsText(k), rounds)
		ps, busy := phasesOn(k, rounds, 500*time.Millisecond, big)
		checkPhases(r, "1 MiB echo, "+streamsText(k), ps)
		name := figCeilBig1
		if k > 1 {
			name = figCeilBig8
		}
		// One message is 1 MiB: messages per second are MiB/s, counted
		// as the proxy scenario counts its 1 MiB bodies (request MiB/s).
		own[name] = ps.rate()
		r.fig(Figure{Name: name, Value: ps.rate(), Unit: "MiB/s", Samples: len(ps.lat)})
		r.notef("1 MiB echo, %s: %s.", streamsText(k), busy)
	}

	// One way, to compare with ../shared/DEPENDENCIES.md (one process,
	// ≈ 450 MiB/s under the PSK).
	total := r.pick(256, 64) << 20
	var sent int64
	var took time.Duration
	for range r.pick(4, 2) {
		d, err := sinkOnce(ctx, h, ai.ID, big, total)
		if err != nil {
			r.failf("one way to the sink: %v", err)
			break
		}
		sent, took = sent+int64(total), took+d
	}
	oneWay := notMeasured
	if took > 0 {
		oneWay = float64(sent) / (1 << 20) / took.Seconds()
	}
	r.fig(Figure{Name: figCeilOneWay, Value: oneWay, Unit: "MiB/s",
		Anchor: "one process, 60 KiB writes: ≈ 450-475 MiB/s (../shared/DEPENDENCIES.md)"})

	r.notef("Each figure is phases of back-to-back exchanges on kept streams of one connection, one client per stream, "+
		"%d rounds of 200 ms (100 B) or %d of 500 ms (1 MiB); the client writes a 1 MiB message while it reads the echo. "+
		"The one-way figure sends %d MiB to a sink %d times and counts until the sink's answer.",
		r.pick(10, 3), r.pick(6, 2), r.pick(256, 64), r.pick(4, 2))
	ceilingFractions(r, own)
	return nil
}

// ceilingNode starts the bench side's node with the daemons' constructor.
func ceilingNode(pass string) (*p2p.Node, error) {
	key, err := psk.Derive(pass)
	if err != nil {
		return nil, err
	}
	id, err := keys.Generate("Ed25519", 0)
	if err != nil {
		return nil, err
	}
	node, err := p2p.New(p2p.Config{
		PSK: key, Identity: id, DHTClient: true, Timing: p2p.FastTiming(),
		ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
		UserAgent:   "physarum/bench",
	})
	if err != nil {
		return nil, fmt.Errorf("start the bench node: %w", err)
	}
	return node, nil
}

// echoStream is a kept stream of the echo protocol and the buffer its
// answers are read into.
type echoStream struct {
	s   lpnet.Stream
	buf []byte
}

// exchange sends msg and reads it back. A large message is written while
// the echo is read: the echo's window would otherwise fill and both sides
// wait.
func (e *echoStream) exchange(msg []byte) error {
	if len(msg) <= 4<<10 {
		if _, err := e.s.Write(msg); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if _, err := io.ReadFull(e.s, e.buf[:len(msg)]); err != nil {
			return fmt.Errorf("read the echo: %w", err)
		}
		return nil
	}
	werr := make(chan error, 1)
	go func() {
		_, err := e.s.Write(msg)
		werr <- err
	}()
	_, rerr := io.ReadFull(e.s, e.buf[:len(msg)])
	if rerr != nil {
		_ = e.s.Reset() // unblocks the writer
	}
	if err := <-werr; err != nil && rerr == nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read the echo: %w", rerr)
	}
	return nil
}

// sinkOnce sends total bytes in writes of chunk on a new sink stream and
// returns the time until the sink has answered how many it read.
func sinkOnce(ctx context.Context, h host.Host, id peer.ID, chunk []byte, total int) (time.Duration, error) {
	s, err := h.NewStream(ctx, id, ceilingSinkProtocol)
	if err != nil {
		return 0, fmt.Errorf("open a sink stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	start := time.Now()
	for left := total; left > 0; {
		w := chunk[:min(left, len(chunk))]
		if _, err := s.Write(w); err != nil {
			_ = s.Reset()
			return 0, fmt.Errorf("write: %w", err)
		}
		left -= len(w)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return 0, fmt.Errorf("close the write side: %w", err)
	}
	var b [8]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		_ = s.Reset()
		return 0, fmt.Errorf("read the sink's count: %w", err)
	}
	took := time.Since(start)
	_ = s.Close()
	if got := binary.BigEndian.Uint64(b[:]); got != uint64(total) {
		return 0, fmt.Errorf("the sink read %d bytes, sent %d", got, total)
	}
	return took, nil
}

func streamsText(n int) string {
	if n == 1 {
		return "1 stream"
	}
	return fmt.Sprintf("%d streams", n)
}

// proxyVsCeiling says which proxy figure is compared with which of the
// ceiling's. The proxy's figures are found by these name prefixes (a test
// checks that scen_proxy.go still names them so).
var proxyVsCeiling = []struct {
	proxy, ceiling, what string
	latency              bool
	target               *Target
}{
	{proxy: "added latency of the pair, p50", ceiling: figCeilRTTp50, what: "added latency of the pair, p50", latency: true},
	{proxy: "added latency of the pair, p99", ceiling: figCeilRTTp99, what: "added latency of the pair, p99", latency: true},
	{proxy: "small GETs through the pair, 1 client", ceiling: figCeilSmall1, what: "small GETs through the pair, 1 client"},
	{proxy: "small GETs through the pair, 8 clients", ceiling: figCeilSmall8, what: "small GETs through the pair, 8 clients"},
	{proxy: "1 MiB bodies through the pair, 1 client", ceiling: figCeilBig1, what: "1 MiB bodies through the pair, 1 client",
		target: ge(50, ">= 50% of the raw stream ceiling (issue 17)")},
	{proxy: "1 MiB bodies through the pair, 8 clients", ceiling: figCeilBig8, what: "1 MiB bodies through the pair, 8 clients"},
}

// ceilingFractions adds, for each proxy figure of the proxy scenario that
// ran earlier in this run, a figure giving it as a fraction of the
// ceiling, with its fraction of direct HTTP in the same line. own holds
// the ceiling's figures by name.
func ceilingFractions(r *run, own map[string]float64) {
	var px *Scenario
	if r.s.res != nil {
		for _, sc := range r.s.res.Scenarios {
			if sc.Name == proxyScenario {
				px = sc
			}
		}
	}
	if px == nil {
		r.notef("The proxy scenario did not run before this one in this run: no proxy figure is given as a fraction " +
			"of the ceiling (run -only proxy,ceiling).")
		return
	}
	for _, c := range proxyVsCeiling {
		f, ok := findFigure(px, c.proxy)
		if !ok || !f.Measured() {
			r.notef("The proxy scenario has no measured figure %q: not compared.", c.proxy)
			continue
		}
		ceil := own[c.ceiling]
		direct := notMeasured
		if f.Baseline != nil {
			direct = f.Baseline.Value
		}
		if c.latency {
			r.fig(Figure{Name: c.what + " / raw stream round trip", Value: f.Value / ceil, Unit: "×",
				Note: fmt.Sprintf("%s µs = %s of the direct GET (%s), %s× a raw stream round trip (%s)",
					fmtNum(f.Value), pct(f.Value, direct), fmtVal(direct, "µs"), fmtNum(f.Value/ceil), fmtVal(ceil, "µs"))})
			continue
		}
		unit := f.Unit
		r.fig(Figure{Name: c.what + " / raw stream ceiling", Value: 100 * f.Value / ceil, Unit: "%", Target: c.target,
			Note: fmt.Sprintf("%s = %s of direct (%s), %s of the raw stream ceiling (%s)",
				fmtVal(f.Value, unit), pct(f.Value, direct), fmtVal(direct, unit), pct(f.Value, ceil), fmtVal(ceil, ceilingUnit(c.ceiling)))})
	}
	r.notef("The proxy figures are those of the proxy scenario earlier in this run (%s); the fractions are computed here, "+
		"from its results, since both scenarios must have run. A small GET through the pair crosses the stream once each way "+
		"and adds two HTTP hops on loopback, so a raw stream round trip is the least it could add.", px.Status)
}

func findFigure(sc *Scenario, prefix string) (Figure, bool) {
	for _, f := range sc.Figures {
		if strings.HasPrefix(f.Name, prefix) {
			return f, true
		}
	}
	return Figure{}, false
}

func ceilingUnit(name string) string {
	switch name {
	case figCeilSmall1, figCeilSmall8:
		return "round trips/s"
	case figCeilRTTp50, figCeilRTTp99:
		return "µs"
	}
	return "MiB/s"
}

// pct is a/b as a percentage, or "?" when either was not measured.
func pct(a, b float64) string {
	v := 100 * a / b
	if !measured(v) {
		return "? %"
	}
	return fmtVal(v, "%")
}

func fmtNum(v float64) string { return fmtVal(v, "") }
