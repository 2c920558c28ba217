package events_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/events"
)

// TestTheDocumentedStreamIsWhatTheStreamSends reads the example stream of
// docs/reference/http-api.md ("GET /v1/events"): every line that is not
// shortened ("...") decodes as a registry.Event with no field the type
// lacks, names a known topic and type, and a service's "created" line has
// exactly the fields a real stream's has for the same change.
func TestTheDocumentedStreamIsWhatTheStreamSends(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "reference", "http-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(b)
	i := strings.Index(section, "### GET /v1/events")
	if i < 0 {
		t.Fatal("no GET /v1/events section in http-api.md")
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(section[i:]))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "### ") && len(lines) > 0 {
			break
		}
		if (strings.HasPrefix(l, `{"id":`) || strings.HasPrefix(l, `{"type":`)) && !strings.Contains(l, "...") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 3 {
		t.Fatalf("%d example event lines in the section, want a real stream", len(lines))
	}
	var documented map[string]any
	for _, l := range lines {
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		var ev registry.Event
		if err := dec.Decode(&ev); err != nil {
			t.Errorf("documented line %s: %v", l, err)
			continue
		}
		if ev.Type == registry.EventHeartbeat {
			continue
		}
		if err := registry.ValidateTopic(ev.Topic); err != nil || !slices.Contains([]string{registry.EventCreated, registry.EventUpdated, registry.EventDeleted, registry.EventLost}, ev.Type) {
			t.Errorf("documented line %s: topic %q, type %q", l, ev.Topic, ev.Type)
		}
		if ev.Topic == registry.TopicService && ev.Type == registry.EventCreated {
			_ = json.Unmarshal([]byte(l), &documented)
		}
	}
	if documented == nil {
		t.Fatal("no documented service created line")
	}

	// The same change, streamed for real.
	cli := etcd(t)
	from := rev(t, cli)
	// A name of its own each run: the shared etcd outlives a test (and
	// -count=2 runs it again).
	name := fmt.Sprintf("docs-example-%d", from)
	mustPut(t, cli, "/physarum/services/"+name, `{"Exec":{"Command":"/usr/local/bin/hello"},"CpuReq":100,"MemoryReq":32}`)
	s := events.New(cli, events.Config{})
	defer s.Close()
	evs, err := read(t, s, events.Request{EventsRequest: registry.EventsRequest{Index: from, Topics: []string{"service:" + name}}})
	if err != nil {
		t.Fatal(err)
	}
	var real map[string]any
	for _, ev := range evs {
		if ev.Type == registry.EventCreated {
			line, _ := json.Marshal(ev)
			_ = json.NewDecoder(bytes.NewReader(line)).Decode(&real)
		}
	}
	if real == nil {
		t.Fatalf("the real stream sent no created event: %+v", evs)
	}
	if got, want := keys(real), keys(documented); !slices.Equal(got, want) {
		t.Errorf("a real service created event has fields %v; the documented one %v", got, want)
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
