package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/proctest"
	"github.com/physarum-p2p/physarum/registry"
)

// registry-cli events against a real registry-service: past events from
// an index, as lines and as JSON, one topic; a follower that prints a
// change as it happens and exits 0 when interrupted; its refusals.
func TestEvents(t *testing.T) {
	n := startRegistry(t)
	cfg := writeFile(t, "hello.json", goodConfig)
	n.must("add", cfg, "hello")
	n.must("add", cfg, "web")
	n.must("delete", "web")

	out := n.must("events", "-since", "1", "-topic", "service")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			t.Fatalf("line %q", l)
		}
		lines = append(lines, strings.Join(f[1:], " "))
	}
	if want := "service created hello|service created web|service deleted web"; strings.Join(lines, "|") != want {
		t.Errorf("events:\n%s\nwant %s", out, want)
	}
	out = n.must("events", "-since", "1", "-topic", "service:web", "-json")
	var evs []registry.Event
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e registry.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("-json line %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	if len(evs) != 2 || evs[0].Key != "web" || evs[1].Type != registry.EventDeleted || len(evs[0].Object) == 0 || evs[0].ID == "" {
		t.Errorf("-json: %s", out)
	}

	// Following from the last index seen: a change is printed as it
	// happens; an interrupt ends it with exit 0.
	env := []string{"P2P_PSK=" + p2ptest.DefaultPassphrase, nodeflags.EnvBootstraps + "=" + n.boot}
	since := strconv.FormatInt(evs[len(evs)-1].Index, 10)
	f := proctest.Start(t, "events", n.cli, []string{"-keyfile", n.key + ".follow", "events", "-follow", "-since", since, "-topic", "service"}, env)
	n.must("add", cfg, "follow")
	f.WaitOutput("service created follow\n", 30*time.Second)
	if strings.Contains(f.Stdout(), "web") {
		t.Errorf("the follower printed events before -since: %s", f.Stdout())
	}
	if code := f.Stop(10 * time.Second); code != 0 {
		t.Errorf("interrupted follower: exit %d: %s", code, f.Stderr())
	}

	n.fails(2, "nothing to print", "events")
	n.fails(2, "invalid topic", "events", "-follow", "-topic", "nodes")
	n.fails(2, "-since must be", "events", "-since", "-3")
	n.fails(1, "ahead of the store", "events", "-since", "99999999")
}
