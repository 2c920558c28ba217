package repocheck

import (
	"os/exec"
	"strings"
	"testing"
)

// The product's binaries carry no benchmark-only dependency: plotting and
// its fonts and PDF writers are for demos/bench alone.
func TestProductBinariesLeaveBenchmarkDependenciesOut(t *testing.T) {
	banned := []string{"gonum.org/v1/plot", "codeberg.org/go-latex", "codeberg.org/go-pdf", "codeberg.org/go-fonts",
		"github.com/ajstarks/svgo", "git.sr.ht/~sbinet/gg", "github.com/golang/freetype"}
	cmd := exec.Command("go", "list", "-deps", "./allocator", "./proxy", "./registry-service", "./registry-cli")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, b := range banned {
			if strings.HasPrefix(pkg, b) {
				t.Errorf("a product binary depends on %s (benchmark-only)", pkg)
			}
		}
	}
}

// No package of the module (outside tests) imports go-libp2p's root package: its
// defaults name QUIC, WebTransport and WebRTC, which links them into the
// binary (5 MB, and 3 MB of the proxy's idle RSS) though a PSK network uses
// TCP only. common/p2p builds its host from go-libp2p/config instead.
func TestNoPackageImportsLibp2pDefaults(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		for _, imp := range fields[1:] {
			if imp == "github.com/libp2p/go-libp2p" {
				t.Errorf("%s imports github.com/libp2p/go-libp2p (use go-libp2p/config, as common/p2p does)", fields[0])
			}
		}
	}
}
