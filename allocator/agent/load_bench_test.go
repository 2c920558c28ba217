package agent

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// BenchmarkNodeRecordLoad measures what the node record's Load costs the
// registry at 100 nodes of 5 running instances, at the default lease
// (10 s: a heartbeat every 3.3 s). It simulates 10 minutes of status polls
// (every second) through the agent's own loadWindow, builds each node's
// record at each heartbeat as nodeRecord does, and counts:
//
//   - B/record: the record's JSON, which every heartbeat sends to the
//     registry, changed or not;
//   - sent-B/s: that, for the 100 nodes;
//   - writes/s: heartbeats whose record changed, Updated aside. The
//     registry-service writes only those to etcd (PutNode compares the
//     record with what it last wrote, as nodeDigest does); the others
//     only renew the lease;
//   - written-B/s: the bytes of those writes.
//
// Run it with: go test ./allocator/agent -run '^$' -bench NodeRecordLoad -benchtime 1x
func BenchmarkNodeRecordLoad(b *testing.B) {
	for _, sc := range []trafficScenario{
		{name: "no-load-field", busyNodes: 0, noLoad: true},
		{name: "idle", busyNodes: 0},
		{name: "20-busy", busyNodes: 20},
		{name: "all-busy", busyNodes: 100},
	} {
		b.Run(sc.name, func(b *testing.B) {
			var r trafficResult
			for b.Loop() {
				r = simulateTraffic(sc, 100, 5, 10*time.Minute)
			}
			b.ReportMetric(r.recordBytes, "B/record")
			b.ReportMetric(r.sentPerSec, "sent-B/s")
			b.ReportMetric(r.writesPerSec, "writes/s")
			b.ReportMetric(r.writtenPerSec, "written-B/s")
		})
	}
}

// trafficScenario is a network's load: busyNodes of its nodes have every
// instance serving about 50 req/s (Poisson arrivals, about 1 in flight,
// 15 to 25 % CPU); the others' instances are idle (no requests, CPU
// noise of 0 to 0.6 %).
type trafficScenario struct {
	name      string
	busyNodes int
	noLoad    bool // records as before Load: the baseline
}

type trafficResult struct {
	recordBytes, sentPerSec, writesPerSec, writtenPerSec float64
}

func simulateTraffic(sc trafficScenario, nodes, perNode int, d time.Duration) trafficResult {
	rng := rand.New(rand.NewPCG(1, 2))
	const heartbeat = 10 * time.Second / 3
	epoch := time.Unix(1_800_000_000, 0)

	type sim struct {
		id, service string
		requests    uint64
		cpu         float64
		win         loadWindow
	}
	type node struct {
		rec   registry.Node
		insts []*sim
		last  string // digest of the record last written
	}
	services := []string{"orders", "users", "catalog", "payments", "search", "images", "auth", "mail"}
	ns := make([]*node, nodes)
	for i := range ns {
		n := &node{rec: registry.Node{
			PeerID:   fmt.Sprintf("12D3KooW%044d", i),
			Name:     fmt.Sprintf("node-%03d", i),
			Addrs:    []string{fmt.Sprintf("/ip4/10.0.%d.%d/tcp/4001", i/250, i%250+1), "/ip4/127.0.0.1/tcp/4001"},
			Runtimes: []string{registry.RuntimeDocker, registry.RuntimeProcess},
			CPU:      4000, Memory: 8192, FreeCPU: 3500, FreeMemory: 7552, Instances: perNode,
		}}
		for j := range perNode {
			svc := services[(i+j)%len(services)]
			n.insts = append(n.insts, &sim{id: newID(svc), service: svc})
		}
		ns[i] = n
	}

	var sent, writes, written int
	var beats int
	next := heartbeat
	for at := time.Duration(0); at <= d; at += time.Second {
		now := epoch.Add(at)
		for i, n := range ns {
			busy := i < sc.busyNodes
			for _, in := range n.insts {
				inFlight := 0
				if busy {
					in.requests += poisson(rng, 50)
					in.cpu += 0.15 + 0.1*rng.Float64()
					inFlight = int(poisson(rng, 1))
				} else {
					in.cpu += 0.006 * rng.Float64()
				}
				in.win.add(loadSample{at: now, requests: in.requests, inFlight: inFlight, cpu: in.cpu, hasCPU: true})
			}
		}
		if at < next {
			continue
		}
		next += heartbeat
		beats++
		for _, n := range ns {
			rec := n.rec
			rec.Updated = now.UTC()
			if !sc.noLoad {
				for _, in := range n.insts {
					rps, inFlight, cpu, ok := in.win.publish(now)
					if ok {
						rec.Load = append(rec.Load, registry.InstanceLoad{ID: in.id, Service: in.service, RPS: rps, InFlight: inFlight, CPU: cpu})
					}
				}
				rec.Load = capLoad(rec.Load, registry.MaxNodeLoad)
			}
			b, _ := json.Marshal(rec)
			sent += len(b)
			rec.Updated = time.Time{}
			digest, _ := json.Marshal(rec)
			if string(digest) != n.last {
				n.last = string(digest)
				if beats > 1 { // the first is every record's first write
					writes++
					written += len(b)
				}
			}
		}
	}
	secs := float64(beats) * heartbeat.Seconds()
	later := float64(beats-1) * heartbeat.Seconds() // the heartbeats after the first
	return trafficResult{
		recordBytes:   float64(sent) / float64(beats*nodes),
		sentPerSec:    float64(sent) / secs,
		writesPerSec:  float64(writes) / later,
		writtenPerSec: float64(written) / later,
	}
}

// poisson draws from a Poisson distribution of mean mean: Knuth's method
// below 30, the normal approximation above.
func poisson(rng *rand.Rand, mean float64) uint64 {
	if mean >= 30 {
		return uint64(max(0, math.Round(mean+math.Sqrt(mean)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), uint64(0), 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
