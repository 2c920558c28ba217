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
