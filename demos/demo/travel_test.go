package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTransfersOf reads the transfers a site's allocator logged: an image
// fetched from another site, and one registry-cli pushed; other lines are
// not transfers.
func TestTransfersOf(t *testing.T) {
	old := sites[0].peer
	sites[0].peer = "12D3KooWsitea"
	t.Cleanup(func() { sites[0].peer = old })
	log := `time=2026-12-07T16:50:01.000Z level=INFO msg="took image" bin=allocator component=images image=sha256:aa peer=12D3KooWcli bytes=2097152 seconds=0.5 mib_per_s=4.0
time=2026-12-07T16:50:02.000Z level=INFO msg="sent image" bin=allocator component=images image=sha256:aa peer=12D3KooWsitea bytes=1 seconds=1 mib_per_s=0.0
time=2026-12-07T16:50:03.000Z level=INFO msg="fetched image" bin=allocator component=images image=sha256:bb peer=12D3KooWsitea bytes=1048576 seconds=0.25 mib_per_s=4.0
time=2026-12-07T16:50:04.000Z level=WARN msg="image fetch from a holder failed; trying the next" image=sha256:bb peer=12D3KooWsitea err="busy"
`
	path := filepath.Join(t.TempDir(), "site-c.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := transfersOf(path, "site-c")
	want := []transfer{
		{at: "2026-12-07T16:50:01.000Z", image: "sha256:aa", from: "site-a via registry-cli", to: "site-c", how: "pushed by registry-cli add", bytes: 2 << 20, seconds: 0.5},
		{at: "2026-12-07T16:50:03.000Z", image: "sha256:bb", from: "site-a", to: "site-c", how: "fetched on need", bytes: 1 << 20, seconds: 0.25},
	}
	if len(got) != len(want) {
		t.Fatalf("transfersOf = %+v; want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("transfer %d = %+v; want %+v", i, got[i], want[i])
		}
	}
}
