package placement

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/registry"
)

// image is the image ID of the Docker services of these tests.
const image = "sha256:5e1f0000000000000000000000000000000000000000000000000000000000aa"

// node returns a node offering cpu millicores and mem MiB, with freeCPU
// and freeMem left, running runtimes (docker when none are given).
func node(id string, cpu, freeCPU, mem, freeMem int, runtimes ...string) registry.Node {
	if len(runtimes) == 0 {
		runtimes = []string{registry.RuntimeDocker}
	}
	return registry.Node{PeerID: id, Runtimes: runtimes, CPU: cpu, FreeCPU: freeCPU, Memory: mem, FreeMemory: freeMem}
}

// big is a node with plenty of room, so that only the criterion under test
// differs between candidates.
func big(id string, runtimes ...string) registry.Node {
	return node(id, 4000, 4000, 4096, 4096, runtimes...)
}

func at(n registry.Node, rtt float64) Candidate {
	return Candidate{Node: n, RTT: rtt, RTTKnown: true}
}

func unknownRTT(n registry.Node) Candidate { return Candidate{Node: n} }

func withInstances(c Candidate, n int) Candidate { c.Instances = n; return c }

// holding returns n with images in its Docker daemon.
func holding(n registry.Node, images ...string) registry.Node {
	n.Images = images
	return n
}

func withLabels(n registry.Node, kv ...string) registry.Node {
	n.Labels = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Labels[kv[i]] = kv[i+1]
	}
	return n
}

func dockerService(cpu, mem int, soft, hard float64) registry.ServiceInfo {
	return registry.ServiceInfo{
		DockerHash:     image,
		CpuReq:         cpu,
		MemoryReq:      mem,
		NetworkSoftReq: registry.PerfInd{RTT: soft},
		NetworkHardReq: registry.PerfInd{RTT: hard},
	}
}

func processService(cpu, mem int) registry.ServiceInfo {
	return registry.ServiceInfo{Exec: &registry.ExecConf{Command: "/bin/svc"}, CpuReq: cpu, MemoryReq: mem}
}

func ids(rs []Ranked) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Node.PeerID
	}
	return out
}

func TestFilters(t *testing.T) {
	both := registry.ServiceInfo{DockerHash: image, Exec: &registry.ExecConf{Command: "/bin/svc"}}
	tests := []struct {
		name       string
		req        Request
		candidates []Candidate
		want       []string          // ranked peer IDs; nil when none pass
		rejected   map[string]Reason // expected reasons
	}{
		{
			name:       "runtime: docker service on a process-only node",
			req:        Request{Service: "x", Info: dockerService(0, 0, 0, 0)},
			candidates: []Candidate{at(big("a", registry.RuntimeProcess), 1), at(big("b"), 1)},
			want:       []string{"b"},
			rejected:   map[string]Reason{"a": ReasonRuntime},
		},
		{
			name:       "runtime: process service on a docker-only node",
			req:        Request{Service: "x", Info: processService(0, 0)},
			candidates: []Candidate{at(big("a", registry.RuntimeDocker), 1), at(big("b", registry.RuntimeProcess), 1)},
			want:       []string{"b"},
		},
		{
			name: "runtime: a service with both runtimes runs on either",
			req:  Request{Service: "x", Info: both},
			candidates: []Candidate{
				at(holding(big("a", registry.RuntimeDocker), image), 1), // holds it: RTT decides
				at(big("b", registry.RuntimeProcess), 2),
				at(big("c", "wasm"), 3),
				{Node: registry.Node{PeerID: "d", CPU: 1000, FreeCPU: 1000}, RTT: 4, RTTKnown: true},
			},
			want: []string{"a", "b"},
		},
		{
			name:       "runtime: a node with no runtime at all",
			req:        Request{Service: "x", Info: dockerService(0, 0, 0, 0)},
			candidates: []Candidate{{Node: registry.Node{PeerID: "a", CPU: 1000, FreeCPU: 1000}, RTTKnown: true}},
			rejected:   map[string]Reason{"a": ReasonRuntime},
		},
		{
			name: "labels: missing key and wrong value are filtered",
			req:  Request{Service: "x", Info: dockerService(0, 0, 0, 0), Labels: map[string]string{"zone": "eu", "gpu": "yes"}},
			candidates: []Candidate{
				at(withLabels(big("a"), "zone", "eu"), 1),
				at(withLabels(big("b"), "zone", "us", "gpu", "yes"), 1),
				at(withLabels(big("c"), "zone", "eu", "gpu", "yes", "extra", "1"), 1),
				at(big("d"), 1),
			},
			want:     []string{"c"},
			rejected: map[string]Reason{"a": ReasonLabels, "b": ReasonLabels, "d": ReasonLabels},
		},
		{
			name:       "labels: none required matches every node",
			req:        Request{Service: "x", Info: dockerService(0, 0, 0, 0), Labels: map[string]string{}},
			candidates: []Candidate{at(big("a"), 1), at(withLabels(big("b"), "zone", "eu"), 2)},
			want:       []string{"a", "b"},
		},
		{
			name:       "hard RTT: above is filtered, equal passes",
			req:        Request{Service: "x", Info: dockerService(0, 0, 0, 20)},
			candidates: []Candidate{at(big("a"), 20.5), at(big("b"), 20), at(big("c"), 0)},
			want:       []string{"c", "b"},
			rejected:   map[string]Reason{"a": ReasonTooFar},
		},
		{
			name:       "hard RTT: unknown RTT is excluded under a hard limit",
			req:        Request{Service: "x", Info: dockerService(0, 0, 0, 20)},
			candidates: []Candidate{unknownRTT(big("a")), {Node: big("n"), RTT: math.NaN(), RTTKnown: true}, at(big("b"), 19)},
			want:       []string{"b"},
			rejected:   map[string]Reason{"a": ReasonNoRTT, "n": ReasonNoRTT},
		},
		{
			name:       "hard RTT: 0 means no limit, unknown RTT passes",
			req:        Request{Service: "x", Info: dockerService(0, 0, 0, 0)},
			candidates: []Candidate{unknownRTT(big("a")), at(big("b"), 5000)},
			want:       []string{"b", "a"},
		},
		{
			name:       "CPU: short is filtered, exact fits",
			req:        Request{Service: "x", Info: dockerService(600, 0, 0, 0)},
			candidates: []Candidate{at(node("a", 1000, 599, 1024, 1024), 1), at(node("b", 1000, 600, 1024, 1024), 1)},
			want:       []string{"b"},
			rejected:   map[string]Reason{"a": ReasonCPU},
		},
		{
			name:       "memory: short is filtered, exact fits",
			req:        Request{Service: "x", Info: dockerService(0, 256, 0, 0)},
			candidates: []Candidate{at(node("a", 1000, 1000, 1024, 255), 1), at(node("b", 1000, 1000, 1024, 256), 1)},
			want:       []string{"b"},
			rejected:   map[string]Reason{"a": ReasonMemory},
		},
		{
			name: "first failing filter is the one reported",
			req:  Request{Service: "x", Info: dockerService(600, 256, 0, 20), Labels: map[string]string{"zone": "eu"}},
			candidates: []Candidate{
				at(node("runtime", 1000, 0, 0, 0, registry.RuntimeProcess), 99),
				at(node("labels", 1000, 0, 0, 0), 99),
				at(withLabels(node("far", 1000, 0, 0, 0), "zone", "eu"), 99),
				at(withLabels(node("cpu", 1000, 0, 0, 0), "zone", "eu"), 1),
				at(withLabels(node("mem", 1000, 1000, 1024, 0), "zone", "eu"), 1),
			},
			rejected: map[string]Reason{"runtime": ReasonRuntime, "labels": ReasonLabels, "far": ReasonTooFar, "cpu": ReasonCPU, "mem": ReasonMemory},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Rank(tt.req, tt.candidates)
			if tt.want == nil {
				if !errors.Is(err, ErrNoCandidate) {
					t.Fatalf("Rank = %v, %v; want ErrNoCandidate", ids(got), err)
				}
			} else if err != nil {
				t.Fatalf("Rank: %v", err)
			}
			if !slices.Equal(ids(got), tt.want) {
				t.Errorf("ranked %v, want %v", ids(got), tt.want)
			}
			if tt.rejected == nil {
				return
			}
			if err == nil {
				// Some passed: check the filter on each rejected node alone.
				for id, want := range tt.rejected {
					for _, c := range tt.candidates {
						if c.Node.PeerID == id {
							if reason, ok := filter(tt.req, c); ok || reason != want {
								t.Errorf("node %s: filter = %q, %v; want %q", id, reason, ok, want)
							}
						}
					}
				}
				return
			}
			var rej *Rejections
			if !errors.As(err, &rej) {
				t.Fatalf("error %T is not a *Rejections", err)
			}
			for id, want := range tt.rejected {
				if rej.Nodes[id] != want {
					t.Errorf("node %s rejected as %q, want %q", id, rej.Nodes[id], want)
				}
			}
		})
	}
}

func TestRankOrder(t *testing.T) {
	tests := []struct {
		name       string
		info       registry.ServiceInfo
		candidates []Candidate
		want       []string
	}{
		{
			name: "within soft beats free capacity",
			info: dockerService(100, 0, 10, 0),
			candidates: []Candidate{
				at(node("roomy-far", 4000, 4000, 1024, 1024), 30),
				at(node("tight-near", 1000, 200, 1024, 1024), 5),
			},
			want: []string{"tight-near", "roomy-far"},
		},
		{
			name: "soft RTT is inclusive",
			info: dockerService(0, 0, 10, 0),
			candidates: []Candidate{
				at(node("over", 4000, 4000, 1024, 1024), 10.01),
				at(node("edge", 1000, 100, 1024, 1024), 10),
			},
			want: []string{"edge", "over"},
		},
		{
			name: "soft 0 puts every node within soft: capacity decides",
			info: dockerService(100, 0, 0, 0),
			candidates: []Candidate{
				at(node("tight-near", 1000, 200, 1024, 1024), 1),
				at(node("roomy-far", 4000, 4000, 1024, 1024), 500),
			},
			want: []string{"roomy-far", "tight-near"},
		},
		{
			name: "unknown RTT is not within a soft limit",
			info: dockerService(0, 0, 10, 0),
			candidates: []Candidate{
				unknownRTT(big("unknown")),
				at(node("near", 1000, 100, 1024, 100), 3),
			},
			want: []string{"near", "unknown"},
		},
		{
			name: "holding the image beats free capacity",
			info: dockerService(100, 0, 0, 0),
			candidates: []Candidate{
				at(node("roomy-fetches", 4000, 4000, 1024, 1024), 1),
				at(holding(node("tight-holds", 1000, 200, 1024, 1024), image), 1),
			},
			want: []string{"tight-holds", "roomy-fetches"},
		},
		{
			name: "holding the image beats spreading and RTT",
			info: dockerService(0, 0, 50, 0),
			candidates: []Candidate{
				withInstances(at(big("near-empty"), 1), 0),
				withInstances(at(holding(big("far-crowded"), "sha256:other", image), 40), 3),
			},
			want: []string{"far-crowded", "near-empty"},
		},
		{
			name: "within soft beats holding the image",
			info: dockerService(0, 0, 10, 0),
			candidates: []Candidate{
				at(holding(big("far-holds"), image), 30),
				at(node("near-fetches", 1000, 100, 1024, 100), 5),
			},
			want: []string{"near-fetches", "far-holds"},
		},
		{
			name: "only the service's own image counts",
			info: dockerService(100, 0, 0, 0),
			candidates: []Candidate{
				at(holding(node("tight-other", 1000, 200, 1024, 1024), "sha256:other"), 1),
				at(node("roomy", 4000, 4000, 1024, 1024), 1),
			},
			want: []string{"roomy", "tight-other"},
		},
		{
			name: "a service without DockerHash: images do not matter",
			info: processService(100, 0),
			candidates: []Candidate{
				at(holding(node("tight-images", 1000, 200, 1024, 1024, registry.RuntimeProcess), image), 1),
				at(node("roomy", 4000, 4000, 1024, 1024, registry.RuntimeProcess), 1),
			},
			want: []string{"roomy", "tight-images"},
		},
		{
			name: "a process node needs no image: it ranks with the holders",
			info: registry.ServiceInfo{DockerHash: image, Exec: &registry.ExecConf{Command: "/bin/svc"}, CpuReq: 100},
			candidates: []Candidate{
				at(node("roomiest-fetches", 8000, 8000, 1024, 1024, registry.RuntimeDocker, registry.RuntimeProcess), 1),
				at(holding(node("tight-holds", 1000, 200, 1024, 1024), image), 1),
				at(node("roomy-process", 4000, 4000, 1024, 1024, registry.RuntimeProcess), 1),
			},
			want: []string{"roomy-process", "tight-holds", "roomiest-fetches"},
		},
		{
			name: "free capacity beats spreading",
			info: dockerService(100, 100, 0, 0),
			candidates: []Candidate{
				withInstances(at(node("busy-empty", 1000, 300, 1024, 1024), 1), 0),
				withInstances(at(node("roomy-crowded", 1000, 1000, 1024, 1024), 1), 5),
			},
			want: []string{"roomy-crowded", "busy-empty"},
		},
		{
			name: "free capacity is counted after placing",
			// Before placing a has 70% free and b 65%; after 600 millicores
			// a has 10% and b 35%.
			info: dockerService(600, 0, 0, 0),
			candidates: []Candidate{
				at(node("a", 1000, 700, 1024, 1024), 1),
				at(node("b", 2000, 1300, 1024, 1024), 1),
			},
			want: []string{"b", "a"},
		},
		{
			name: "free capacity is the scarcer of CPU and memory",
			info: dockerService(0, 0, 0, 0),
			candidates: []Candidate{
				at(node("cpu-rich-mem-poor", 1000, 900, 1000, 100), 1),
				at(node("balanced", 1000, 400, 1000, 400), 1),
			},
			want: []string{"balanced", "cpu-rich-mem-poor"},
		},
		{
			name: "capacity within one step: spreading decides",
			info: dockerService(0, 0, 0, 0),
			candidates: []Candidate{
				withInstances(at(node("a", 1000, 620, 1024, 1024), 1), 2),
				withInstances(at(node("b", 1000, 610, 1024, 1024), 1), 1),
			},
			want: []string{"b", "a"},
		},
		{
			name: "capacity a step apart beats spreading",
			info: dockerService(0, 0, 0, 0),
			candidates: []Candidate{
				withInstances(at(node("a", 1000, 650, 1024, 1024), 1), 2),
				withInstances(at(node("b", 1000, 649, 1024, 1024), 1), 1),
			},
			want: []string{"a", "b"},
		},
		{
			name: "spreading beats RTT",
			info: dockerService(0, 0, 50, 0),
			candidates: []Candidate{
				withInstances(at(big("near-crowded"), 1), 3),
				withInstances(at(big("far-empty"), 40), 0),
			},
			want: []string{"far-empty", "near-crowded"},
		},
		{
			name: "RTT beats peer ID",
			info: dockerService(0, 0, 0, 0),
			candidates: []Candidate{
				at(big("a"), 7),
				at(big("b"), 2),
				unknownRTT(big("0")),
			},
			want: []string{"b", "a", "0"},
		},
		{
			name: "full tie: peer ID ascending",
			info: dockerService(100, 100, 10, 20),
			candidates: []Candidate{
				at(big("QmZ"), 5),
				at(big("QmA"), 5),
				at(big("QmM"), 5),
			},
			want: []string{"QmA", "QmM", "QmZ"},
		},
		{
			name: "a node offering no capacity ranks last among fits",
			info: dockerService(0, 0, 0, 0),
			candidates: []Candidate{
				at(node("empty", 0, 0, 0, 0), 1),
				at(node("some", 1000, 100, 1024, 100), 1),
			},
			want: []string{"some", "empty"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every order of the input gives the same ranking.
			for _, in := range permutations(tt.candidates) {
				got, err := Rank(Request{Service: "x", Info: tt.info}, in)
				if err != nil {
					t.Fatalf("Rank: %v", err)
				}
				if !slices.Equal(ids(got), tt.want) {
					t.Fatalf("input %v: ranked %v, want %v", peerIDs(in), ids(got), tt.want)
				}
			}
		})
	}
}

func TestExamples(t *testing.T) {
	t.Run("capacity 1000, needs 600: the node with 400 free is skipped", func(t *testing.T) {
		info := dockerService(600, 0, 0, 0)
		for _, in := range permutations([]Candidate{
			at(node("busy", 1000, 400, 1024, 1024), 1),
			at(node("next", 1000, 1000, 1024, 1024), 9),
		}) {
			got, err := Rank(Request{Service: "x", Info: info}, in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), []string{"next"}) {
				t.Fatalf("ranked %v, want [next]", ids(got))
			}
		}
	})
	t.Run("hard RTT 20 ms: 5 ms is chosen over 40 ms", func(t *testing.T) {
		info := dockerService(100, 64, 0, 20)
		// The 40 ms node is roomier and runs nothing yet: it still never wins.
		for _, in := range permutations([]Candidate{
			withInstances(at(node("near", 1000, 200, 1024, 100), 5), 3),
			at(node("far", 8000, 8000, 8192, 8192), 40),
		}) {
			got, err := Rank(Request{Service: "x", Info: info}, in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), []string{"near"}) {
				t.Fatalf("ranked %v, want [near]", ids(got))
			}
		}
	})
}

func TestRankedCarriesScore(t *testing.T) {
	got, err := Rank(Request{Info: dockerService(500, 512, 10, 0)}, []Candidate{
		at(node("a", 1000, 1000, 1024, 1024), 12),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].WithinSoft || got[0].HoldsImage || got[0].Headroom != 0.5 || got[0].RTT != 12 {
		t.Fatalf("got %+v, want WithinSoft=false HoldsImage=false Headroom=0.5 RTT=12", got[0])
	}
}

func TestRankedHoldsImage(t *testing.T) {
	both := registry.ServiceInfo{DockerHash: image, Exec: &registry.ExecConf{Command: "/bin/svc"}}
	tests := []struct {
		name string
		info registry.ServiceInfo
		node registry.Node
		want bool
	}{
		{"docker node with the image", both, holding(big("n"), "sha256:other", image), true},
		{"docker node with other images", both, holding(big("n"), "sha256:other"), false},
		{"docker node with none", both, big("n"), false},
		{"process node listing the image", both, holding(big("n", registry.RuntimeProcess), image), false},
		{"service without DockerHash", processService(0, 0), holding(big("n", registry.RuntimeDocker, registry.RuntimeProcess), image), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Rank(Request{Info: tt.info}, []Candidate{at(tt.node, 1)})
			if err != nil {
				t.Fatal(err)
			}
			if got[0].HoldsImage != tt.want {
				t.Errorf("HoldsImage = %v, want %v", got[0].HoldsImage, tt.want)
			}
		})
	}
}

func TestRankDoesNotModifyInput(t *testing.T) {
	in := []Candidate{at(big("b"), 9), at(big("a"), 1), at(big("c", registry.RuntimeProcess), 1)}
	before := peerIDs(in)
	if _, err := Rank(Request{Info: dockerService(0, 0, 0, 0)}, in); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(peerIDs(in), before) {
		t.Fatalf("input reordered: %v, was %v", peerIDs(in), before)
	}
}

func TestNoCandidateErrors(t *testing.T) {
	tests := []struct {
		name       string
		req        Request
		candidates []Candidate
		want       string
	}{
		{
			name: "empty input",
			req:  Request{Service: "x", Info: dockerService(0, 0, 0, 0)},
			want: "no node can run service x: no allocator nodes are known",
		},
		{
			name: "the example: per filter, in one line",
			req:  Request{Service: "x", Info: dockerService(600, 0, 0, 20)},
			candidates: []Candidate{
				at(big("far1"), 40),
				at(big("far2"), 25.5),
				at(node("busy", 1000, 400, 1024, 1024), 5),
				at(big("proc", registry.RuntimeProcess), 5),
			},
			want: "no node can run service x: 2 too far (hard RTT 20 ms, nearest 25.5 ms), 1 without capacity (needs 600 millicores, at most 400 free), 1 without the docker runtime",
		},
		{
			name: "CPU and memory, unknown RTT, labels",
			req:  Request{Service: "web", Info: dockerService(600, 512, 0, 20), Labels: map[string]string{"zone": "eu", "disk": "ssd"}},
			candidates: []Candidate{
				at(withLabels(node("cpu1", 1000, 100, 1024, 1024), "zone", "eu", "disk", "ssd"), 5),
				at(withLabels(node("cpu2", 1000, 300, 1024, 1024), "zone", "eu", "disk", "ssd"), 5),
				at(withLabels(node("mem", 1000, 1000, 1024, 200), "zone", "eu", "disk", "ssd"), 5),
				unknownRTT(withLabels(big("lost"), "zone", "eu", "disk", "ssd")),
				at(withLabels(big("us"), "zone", "us"), 5),
			},
			want: "no node can run service web: 1 with no RTT measured (hard RTT 20 ms), 3 without capacity (needs 600 millicores, at most 300 free; 512 MiB, at most 200 free), 1 without labels disk=ssd,zone=eu",
		},
		{
			name:       "a service with neither runtime",
			req:        Request{Service: "x", Info: registry.ServiceInfo{}},
			candidates: []Candidate{at(big("a"), 1)},
			want:       "no node can run service x: 1 without a runtime for it (the service has neither DockerHash nor Exec)",
		},
		{
			name:       "both runtimes named",
			req:        Request{Info: registry.ServiceInfo{DockerHash: "d", Exec: &registry.ExecConf{Command: "c"}}},
			candidates: []Candidate{at(big("a", "wasm"), 1)},
			want:       "no node can run the service: 1 without the docker or process runtime",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Rank(tt.req, tt.candidates)
			if got != nil || !errors.Is(err, ErrNoCandidate) {
				t.Fatalf("Rank = %v, %v; want nil, ErrNoCandidate", ids(got), err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			var rej *Rejections
			if !errors.As(err, &rej) {
				t.Fatalf("error %T is not a *Rejections", err)
			}
			total := 0
			for _, n := range rej.Counts {
				total += n
			}
			if total != len(tt.candidates) || rej.Candidates != len(tt.candidates) {
				t.Errorf("counted %d rejections of %d candidates (Candidates=%d)", total, len(tt.candidates), rej.Candidates)
			}
		})
	}
}

func peerIDs(cs []Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Node.PeerID
	}
	return out
}

// permutations returns every order of cs (cs is small).
func permutations(cs []Candidate) [][]Candidate {
	if len(cs) <= 1 {
		return [][]Candidate{slices.Clone(cs)}
	}
	var out [][]Candidate
	for i := range cs {
		rest := append(slices.Clone(cs[:i]), cs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]Candidate{cs[i]}, p...))
		}
	}
	return out
}
