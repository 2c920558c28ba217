package agent

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/registry"
)

// BenchmarkNodeRecordRTTs measures what the node record's RTTs cost the
// registry at 100 allocators in 10 sites of 10, at the default lease
// (10 s: a heartbeat, and a round of pings, every 3.3 s). It simulates
// 10 minutes of rounds: every node pings the peers its own rttBook picks
// (16 a round, in turn, so each of the 99 others every 7 rounds), each
// measure the best of 3 samples folded into an EWMA of weight 0.5 (as
// rtt.Tracker does), and the book's published RTTs go in the record at
// each heartbeat. The RTT of a pair is 0.3 ms within a site,
// 1 ms plus 1 ms per 100 km between sites (spread over 4000 × 2000 km);
// each sample adds jitter. It counts, as BenchmarkNodeRecordLoad does:
//
//   - B/record: the record's JSON, sent with every heartbeat;
//   - sent-B/s: that, for the 100 nodes;
//   - writes/s and written-B/s: heartbeats whose record changed,
//     Updated aside, which the registry writes to etcd (the others only
//     renew the lease), after the first minute; first-minute-writes/node
//     those of the first minute, while the nodes first measure each other
//     and the smoothed values settle;
//   - list-B/s: the node lists every allocator reads to learn the others
//     (brief, every Config.PeerListEvery: 30 s), as the registry sends
//     them; full-list-B/s what whole records would cost instead.
//
// Run it with: go test ./allocator/agent -run '^$' -bench NodeRecordRTTs -benchtime 1x
func BenchmarkNodeRecordRTTs(b *testing.B) {
	ids := make([]peer.ID, 100)
	for i := range ids {
		ids[i] = p2ptest.ID(b, i+1)
	}
	for _, sc := range []rttScenario{
		{name: "no-rtts", noRTTs: true},
		// A quiet network: 2 % (half-normal) of the RTT, and 50 µs of
		// queueing on average (exponential), per sample.
		{name: "stable", rel: 0.02, queue: 0.05},
		// 10 % of the RTT, 1 ms of queueing, and 2 % of samples three
		// times as long.
		{name: "jittery", rel: 0.10, queue: 1, spike: 0.02},
		// A congested network: 30 %, 5 ms, 5 % spikes.
		{name: "congested", rel: 0.30, queue: 5, spike: 0.05},
	} {
		b.Run(sc.name, func(b *testing.B) {
			var r rttTrafficResult
			for b.Loop() {
				r = simulateRTTTraffic(sc, ids, 10, 10*time.Minute)
			}
			b.ReportMetric(r.recordBytes, "B/record")
			b.ReportMetric(r.sentPerSec, "sent-B/s")
			b.ReportMetric(r.writesPerSec, "writes/s")
			b.ReportMetric(r.writtenPerSec, "written-B/s")
			b.ReportMetric(r.listPerSec, "list-B/s")
			b.ReportMetric(r.fullListPerSec, "full-list-B/s")
			b.ReportMetric(r.entries, "RTTs/record")
			b.ReportMetric(r.startWrites, "first-minute-writes/node")
		})
	}
}

// rttScenario is how samples scatter around a pair's RTT: each is the
// RTT times 1 plus a half-normal of deviation rel, plus an exponential
// queueing delay of mean queue ms, and with probability spike three
// times that.
type rttScenario struct {
	name              string
	noRTTs            bool // records as before RTTs: the baseline
	rel, queue, spike float64
}

type rttTrafficResult struct {
	recordBytes, sentPerSec, writesPerSec, writtenPerSec float64
	listPerSec, fullListPerSec, entries                  float64
	startWrites                                          float64 // per node, in the first minute
}

func simulateRTTTraffic(sc rttScenario, ids []peer.ID, sites int, d time.Duration) rttTrafficResult {
	rng := rand.New(rand.NewPCG(3, 4))
	const heartbeat = 10 * time.Second / 3
	const listEvery = 30 * time.Second
	// warmUp is the first minute, while each node measures the others for
	// the first time (each in turn, 7 rounds) and its EWMAs settle: its
	// writes are counted apart.
	const warmUp = time.Minute
	epoch := time.Unix(1_800_000_000, 0)
	n := len(ids)

	// Sites on a plane; node i is in site i%sites.
	type point struct{ x, y float64 }
	where := make([]point, sites)
	for s := range where {
		where[s] = point{4000 * rng.Float64(), 2000 * rng.Float64()}
	}
	base := func(i, j int) float64 {
		si, sj := i%sites, j%sites
		if si == sj {
			return 0.3
		}
		return 1 + math.Hypot(where[si].x-where[sj].x, where[si].y-where[sj].y)/100
	}
	sample := func(rtt float64) float64 {
		v := rtt*(1+sc.rel*math.Abs(rng.NormFloat64())) + sc.queue*rng.ExpFloat64()
		if rng.Float64() < sc.spike {
			v *= 3
		}
		return v
	}

	type node struct {
		rec      registry.Node
		book     *rttBook
		smoothed []float64 // by peer index; 0: none yet
		last     string    // digest of the record last written
	}
	index := make(map[peer.ID]int, n)
	for i, id := range ids {
		index[id] = i
	}
	ns := make([]*node, n)
	for i := range ns {
		nd := &node{rec: registry.Node{
			PeerID:   ids[i].String(),
			Name:     fmt.Sprintf("node-%03d", i),
			Addrs:    []string{fmt.Sprintf("/ip4/10.0.%d.%d/tcp/4001", i/250, i%250+1), "/ip4/127.0.0.1/tcp/4001"},
			Runtimes: []string{registry.RuntimeDocker, registry.RuntimeProcess},
			CPU:      4000, Memory: 8192, FreeCPU: 3500, FreeMemory: 7552, Instances: 5,
		}, book: newRTTBook(), smoothed: make([]float64, n)}
		var others []peer.ID
		for j, id := range ids {
			if j != i {
				others = append(others, id)
			}
		}
		nd.book.setPeers(others)
		ns[i] = nd
	}

	var sent, writes, written, beats, entries, startWrites int
	var full int // bytes of the records, for a whole list
	for at := time.Duration(0); at <= d; at += heartbeat {
		now := epoch.Add(at)
		beats++
		full = 0
		for i, nd := range ns {
			rec := nd.rec
			if !sc.noRTTs {
				for _, id := range nd.book.pick(maxRTTPeersPerRound) {
					j := index[id]
					best := math.Inf(1)
					for range 3 {
						best = min(best, sample(base(i, j)))
					}
					if nd.smoothed[j] == 0 {
						nd.smoothed[j] = best
					} else {
						nd.smoothed[j] = 0.5*best + 0.5*nd.smoothed[j]
					}
					nd.book.tried(id, nd.smoothed[j], true)
				}
				rec.RTTs = nd.book.publish()
				entries += len(rec.RTTs)
			}
			rec.Updated = now.UTC()
			b, _ := json.Marshal(rec)
			sent += len(b)
			full += len(b)
			rec.Updated = time.Time{}
			digest, _ := json.Marshal(rec)
			if string(digest) != nd.last {
				nd.last = string(digest)
				switch {
				case beats == 1: // every record's first write
				case at < warmUp:
					startWrites++
				default:
					writes++
					written += len(b)
				}
			}
		}
	}
	brief, _ := json.Marshal(ns[0].rec.Brief())
	secs := float64(beats) * heartbeat.Seconds()
	later := (d - warmUp).Seconds()
	listsPerSec := float64(n) / listEvery.Seconds()
	return rttTrafficResult{
		recordBytes:    float64(sent) / float64(beats*n),
		sentPerSec:     float64(sent) / secs,
		writesPerSec:   float64(writes) / later,
		writtenPerSec:  float64(written) / later,
		listPerSec:     listsPerSec * float64(n*len(brief)),
		fullListPerSec: listsPerSec * float64(full),
		entries:        float64(entries) / float64(beats*n),
		startWrites:    float64(startWrites) / float64(n),
	}
}
