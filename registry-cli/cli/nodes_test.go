package cli

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/registry"
)

const (
	imageA = "sha256:aaaa000000000000000000000000000000000000000000000000000000000000"
	imageB = "sha256:bbbb000000000000000000000000000000000000000000000000000000000000"
)

func testNodes() []nodeView {
	return []nodeView{
		{Node: registry.Node{PeerID: "docker-node", Runtimes: []string{"docker", "process"}, CPU: 2000, FreeCPU: 1500,
			Memory: 2048, FreeMemory: 1024, Instances: 2, Labels: map[string]string{"site": "a"}, Images: []string{imageA, imageB}}, RTT: 1.94},
		{Node: registry.Node{PeerID: "process-node", Runtimes: []string{"process"}, CPU: 1000, FreeCPU: 1000,
			Memory: 512, FreeMemory: 512, Message: "docker unavailable: no socket"}},
	}
}

func TestNodesTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeNodes(&b, testNodes()); err != nil {
		t.Fatal(err)
	}
	want := `NODE          RUNTIMES        CPU FREE/TOTAL  MEMORY FREE/TOTAL  INSTANCES  IMAGES  RTT    LABELS  NOTE
docker-node   docker,process  1500/2000m      1024/2048MiB       2          2       1.9ms  site=a
process-node  process         1000/1000m      512/512MiB         0          0       -      -       docker unavailable: no socket
`
	// tabwriter pads the empty NOTE of the first row: compare without
	// trailing blanks.
	if got := trimLines(b.String()); got != want {
		t.Errorf("nodes table:\n%s\nwant:\n%s", got, want)
	}
}

// -json prints the node records whole: the image IDs, not only their count.
func TestNodesJSONCarriesImages(t *testing.T) {
	out, err := json.Marshal(testNodes())
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		PeerID string
		Images []string
		RTT    float64
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Equal(got[0].Images, []string{imageA, imageB}) || got[0].RTT != 1.94 || len(got[1].Images) != 0 {
		t.Errorf("-json gave %s", out)
	}
}

func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}
