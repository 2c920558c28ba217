package docs

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/proctest"
)

var update = flag.Bool("update", false, "rewrite the -help blocks in reference/*.md from the binaries' output")

// updateCommand is what a person runs to refresh the blocks.
const updateCommand = "go test ./docs -run TestReferenceHelp -update"

// binaries are the commands the reference documents, with the package
// each is built from (proctest names a binary after its package's
// directory).
var binaries = []struct{ name, pkg string }{
	{"registry-service", "./registry-service"},
	{"registry-cli", "./registry-cli"},
	{"allocator", "./allocator"},
	{"proxy", "./proxy"},
	{"demo", "./demos/demo"},
}

// Some defaults shown by -help come from the environment (key files and
// data directories under $HOME) or from where the binary lives (demo's
// -bin). The blocks are taken in a fixed environment, HOME=helpHome and
// nothing else but PATH, and the directory the binaries were built into
// reads as helpBinDir, so that they are the same on every machine: what a
// user whose home is /home/user and whose checkout is ~/physarum sees.
const (
	helpHome   = "/home/user"
	helpBinDir = "/home/user/physarum/bin"
)

// markerRE matches the line that introduces a block: <!-- help:BINARY [ARGS] -->.
var markerRE = regexp.MustCompile(`^<!-- help:(.*?) -->\s*$`)

// block is one -help block in a reference file.
type block struct {
	file    string // the markdown file, from the module root
	line    int    // 1-based line of the marker
	command string // binary and arguments, single-spaced: "registry-cli add"
	// start and end delimit the block's content in the file's lines:
	// lines[start:end], between the fences.
	start, end int
}

func (b block) String() string {
	return fmt.Sprintf("%s:%d: `%s -help`", b.file, b.line, b.command)
}

// TestReferenceHelp checks that every -help block in reference/*.md is
// what the binary prints, and that every binary and every registry-cli
// command has one. With -update it rewrites the blocks instead of
// failing on a difference.
func TestReferenceHelp(t *testing.T) {
	root := moduleRoot(t)
	noteSources(t, root)

	pkgs := make([]string, len(binaries))
	for i, b := range binaries {
		pkgs[i] = b.pkg
	}
	binDir := filepath.Dir(proctest.Build(t, pkgs...))

	files, err := filepath.Glob(filepath.Join("reference", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no reference/*.md files")
	}

	// Every binary, and every registry-cli command its -help lists, needs a
	// block.
	cliHelp, err := helpOutput(t, binDir, "registry-cli")
	if err != nil {
		t.Fatalf("registry-cli -help: %v\n%s", err, cliHelp)
	}
	cmds := cliCommands(cliHelp)
	if len(cmds) == 0 {
		t.Fatalf("registry-cli -help has no \"Commands:\" section to take the command list from:\n%s", cliHelp)
	}
	required := map[string]string{} // command -> the file it belongs in
	for _, b := range binaries {
		required[b.name] = filepath.Join("docs", "reference", b.name+".md")
	}
	for _, c := range cmds {
		required["registry-cli "+c] = filepath.Join("docs", "reference", "registry-cli.md")
	}

	known := map[string]bool{}
	for _, b := range binaries {
		known[b.name] = true
	}
	outputs := map[string]string{"registry-cli": cliHelp} // command -> output (cache)
	documented := map[string]bool{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		// Messages name files from the module root, as a person finds them.
		blocks, errs := parseBlocks(filepath.Join("docs", file), lines)
		for _, e := range errs {
			t.Error(e)
		}
		changed := false
		// Last first, so that rewriting a block keeps the line numbers of
		// those before it valid.
		for i := len(blocks) - 1; i >= 0; i-- {
			b := blocks[i]
			documented[b.command] = true
			bin := strings.Fields(b.command)[0]
			if !known[bin] {
				t.Errorf("%s: unknown binary %q (the reference covers %s)", b, bin, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
				continue
			}
			out, ok := outputs[b.command]
			if !ok {
				var err error
				out, err = helpOutput(t, binDir, b.command)
				if err != nil {
					t.Errorf("%s: the command failed (-help must print its usage and exit 0): %v\n%s", b, err, out)
					continue
				}
				outputs[b.command] = out
			}
			want := splitLines(out)
			have := lines[b.start:b.end]
			if slices.Equal(have, want) {
				continue
			}
			if *update {
				lines = slices.Concat(lines[:b.start], want, lines[b.end:])
				changed = true
				t.Logf("%s: rewritten from the binary's output", b)
				continue
			}
			t.Errorf("%s: the block differs from the binary's output\n%s\nRefresh the blocks with: %s", b, firstDifference(have, want), updateCommand)
		}
		if changed {
			if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, c := range slices.Sorted(maps.Keys(required)) {
		if !documented[c] {
			t.Errorf("no -help block for `%s`: add the lines\n\n<!-- help:%s -->\n```text\n```\n\nto %s, then run: %s", c, c, required[c], updateCommand)
		}
	}
}

// parseBlocks finds the -help blocks in a file's lines: a marker line,
// then an opening fence on the next line, then the content up to a line
// that is exactly ``` .
func parseBlocks(file string, lines []string) ([]block, []string) {
	var blocks []block
	var errs []string
	for i := 0; i < len(lines); i++ {
		m := markerRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		command := strings.Join(strings.Fields(m[1]), " ")
		if command == "" {
			errs = append(errs, fmt.Sprintf("%s:%d: help marker without a command", file, i+1))
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			errs = append(errs, fmt.Sprintf("%s:%d: the marker for `%s` must be followed at once by a ``` fence", file, i+1, command))
			continue
		}
		end := -1
		for j := i + 2; j < len(lines); j++ {
			if lines[j] == "```" {
				end = j
				break
			}
		}
		if end < 0 {
			errs = append(errs, fmt.Sprintf("%s:%d: the block for `%s` has no closing ``` line", file, i+1, command))
			continue
		}
		blocks = append(blocks, block{file: file, line: i + 1, command: command, start: i + 2, end: end})
		i = end
	}
	return blocks, errs
}

// helpOutput runs `command -help` (command is the binary and its
// arguments) in the fixed environment and returns what it printed on
// stdout and stderr, in order, with the build directory shown as
// helpBinDir.
func helpOutput(t *testing.T, binDir, command string) (string, error) {
	t.Helper()
	args := strings.Fields(command)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, args[0]), append(args[1:], "-help")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + helpHome}
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.ReplaceAll(out.String(), binDir, helpBinDir), err
}

// cliCommands lists the commands in registry-cli's -help: the first word
// of each indented line after "Commands:", up to the first blank line.
func cliCommands(help string) []string {
	_, after, ok := strings.Cut(help, "\nCommands:\n")
	if !ok {
		return nil
	}
	var cmds []string
	for _, line := range strings.Split(after, "\n") {
		if !strings.HasPrefix(line, " ") || strings.TrimSpace(line) == "" {
			break
		}
		cmds = append(cmds, strings.Fields(line)[0])
	}
	return cmds
}

// splitLines splits output into the lines a block holds (the final
// newline ends the last line; it does not start an empty one).
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// firstDifference describes the first line where the block (have) and
// the output (want) differ.
func firstDifference(have, want []string) string {
	i := 0
	for i < len(have) && i < len(want) && have[i] == want[i] {
		i++
	}
	show := func(lines []string, what string) string {
		if i < len(lines) {
			return fmt.Sprintf("%q", lines[i])
		}
		return "(end of the " + what + ")"
	}
	return fmt.Sprintf("first difference at line %d of the block:\n  doc:    %s\n  binary: %s\n(the block has %d lines, the output %d)",
		i+1, show(have, "block"), show(want, "output"), len(have), len(want))
}

// noteSources opens the module's Go sources and go.mod: go test caches a
// passing result until a file the test opened changes, and the binaries
// are built in a subprocess whose reads it does not see. Opening them here
// makes a change to any flag or usage text run this test again.
func noteSources(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "docs") {
				return filepath.SkipDir
			}
			return nil
		}
		if (strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")) || name == "go.mod" || name == "go.sum" {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			return f.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the module's sources: %v", err)
	}
}

// moduleRoot walks up from the test's directory to go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}
