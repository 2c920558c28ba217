package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestFetchedRates reads an allocator's "fetched image" lines (slog text,
// as the allocator writes them) for one image, and nothing else.
func TestFetchedRates(t *testing.T) {
	const id = "sha256:55b3573fbdf97f8be32a3165ebfd5af33d7996a296a923e05cff307a6023a8b4"
	log := `time=2026-12-07T16:45:29.2Z level=INFO msg="image not on this node; fetching it" bin=allocator image=` + id + `
time=2026-12-07T16:45:29.5Z level=INFO msg="fetched image" bin=allocator component=images image=` + id + ` peer=12D3KooWA bytes=2097152 seconds=0.5 mib_per_s=4.0
time=2026-12-07T16:45:30.7Z level=INFO msg="fetched image" bin=allocator component=images image=sha256:other peer=12D3KooWA bytes=1 seconds=1 mib_per_s=0.0
time=2026-12-07T16:45:31.7Z level=INFO msg="sent image" bin=allocator component=images image=` + id + ` peer=12D3KooWA bytes=1048576 seconds=1 mib_per_s=1.0
time=2026-12-07T16:45:32.7Z level=INFO msg="fetched image" bin=allocator component=images image=` + id + ` peer=12D3KooWB bytes=1048576 seconds=0.25 mib_per_s=4.0
`
	path := filepath.Join(t.TempDir(), "alloc.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	rates, secs := fetchedRates(path, id)
	if len(rates) != 2 || rates[0] != 4 || rates[1] != 4 || secs[0] != 0.5 || secs[1] != 0.25 {
		t.Fatalf("fetchedRates = %v, %v; want [4 4], [0.5 0.25]", rates, secs)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is a figure; want notMeasured")
	}
}
