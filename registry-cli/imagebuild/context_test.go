package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	proxyOnce sync.Once
	proxyBin  string
	proxyErr  error
	proxyDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if proxyDir != "" {
		os.RemoveAll(proxyDir)
	}
	os.Exit(code)
}

// staticProxy builds testdata/printargs as a static Linux binary, once per
// test run, and returns its path. It stands in for the proxy.
func staticProxy(t *testing.T) string {
	t.Helper()
	proxyOnce.Do(func() {
		// Shared by every test of the run; TestMain removes it.
		proxyDir, proxyErr = os.MkdirTemp("", "physarum-imagebuild-") //nolint:usetesting // see above
		if proxyErr != nil {
			return
		}
		proxyBin = filepath.Join(proxyDir, "proxy")
		cmd := exec.Command("go", "build", "-trimpath", "-o", proxyBin, "./testdata/printargs")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			proxyErr = errors.New("go build ./testdata/printargs: " + err.Error() + ": " + string(out))
		}
	})
	if proxyErr != nil {
		t.Fatal(proxyErr)
	}
	return proxyBin
}

// writeTree creates files under dir: a name ending in "/" is a directory,
// "name -> target" a symlink, anything else a file with the given content.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(content, "-> "):
			err = os.Symlink(strings.TrimPrefix(content, "-> "), p)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

type entry struct {
	typ     byte
	mode    int64
	content string // file content or symlink target
}

func readTar(t *testing.T, r io.Reader) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[h.Name]; dup {
			t.Errorf("%s is in the build context twice", h.Name)
		}
		body, _ := io.ReadAll(tr)
		e := entry{typ: h.Typeflag, mode: h.Mode, content: string(body)}
		if h.Typeflag == tar.TypeSymlink {
			e.content = h.Linkname
		}
		out[h.Name] = e
	}
}

func TestBuildContextHoldsOnlyWhatIsNeeded(t *testing.T) {
	proxy := staticProxy(t)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"bin/server":            "server binary",
		"static/index.html":     "<h1>hi</h1>",
		"static/css/site.css":   "body{}",
		"static/empty/":         "",
		"static/link":           "-> index.html",
		"static/outside":        "-> /etc/passwd",
		"static/up":             "-> ../../secret",
		"linkdir":               "-> static/css",
		"unlisted/secret.key":   "never sent",
		"Dockerfile":            "FROM evil",
		"proxy":                 "not the proxy",
		"dir with space/a file": "spaced",
	})
	if err := os.Chmod(filepath.Join(dir, "bin/server"), 0o750); err != nil {
		t.Fatal(err)
	}
	conf := DockerConf{
		From: "scratch",
		Copy: [][2]string{
			{"bin/server", "server"},
			{"static", "www"},
			{"static/css", "css"}, // overlaps the one above
			{"./linkdir", "linked"},
			{"Dockerfile", "Dockerfile.user"},
			{"proxy", "proxy.user"},
			{"dir with space", "spaced"},
		},
		Cmd: "./server",
	}
	dockerfile, err := Dockerfile(conf)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := buildContext(conf, dockerfile, proxy, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := readTar(t, buf)

	proxyBytes, _ := os.ReadFile(proxy)
	want := map[string]entry{
		"Dockerfile":                  {tar.TypeReg, 0o644, dockerfile},
		"proxy":                       {tar.TypeReg, 0o755, string(proxyBytes)},
		"files/bin/server":            {tar.TypeReg, 0o750, "server binary"},
		"files/static/":               {tar.TypeDir, 0o755, ""},
		"files/static/index.html":     {tar.TypeReg, 0o644, "<h1>hi</h1>"},
		"files/static/css/":           {tar.TypeDir, 0o755, ""},
		"files/static/css/site.css":   {tar.TypeReg, 0o644, "body{}"},
		"files/static/empty/":         {tar.TypeDir, 0o755, ""},
		"files/static/link":           {tar.TypeSymlink, 0o777, "index.html"},
		"files/static/outside":        {tar.TypeSymlink, 0o777, "/etc/passwd"},
		"files/static/up":             {tar.TypeSymlink, 0o777, "../../secret"},
		"files/linkdir/":              {tar.TypeDir, 0o755, ""},
		"files/linkdir/site.css":      {tar.TypeReg, 0o644, "body{}"},
		"files/Dockerfile":            {tar.TypeReg, 0o644, "FROM evil"},
		"files/proxy":                 {tar.TypeReg, 0o644, "not the proxy"},
		"files/dir with space/":       {tar.TypeDir, 0o755, ""},
		"files/dir with space/a file": {tar.TypeReg, 0o644, "spaced"},
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s missing from the build context", name)
			continue
		}
		if g.typ != w.typ || g.mode&0o7777 != w.mode&0o7777 && w.typ != tar.TypeSymlink || g.content != w.content {
			t.Errorf("%s: type %c mode %o %.40q; want type %c mode %o %.40q", name, g.typ, g.mode, g.content, w.typ, w.mode, w.content)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is in the build context but should not be", name)
		}
	}
}

func TestBuildContextRefusesEscapes(t *testing.T) {
	proxy := staticProxy(t)
	parent := t.TempDir()
	dir := filepath.Join(parent, "ctx")
	writeTree(t, parent, map[string]string{
		"secret":          "outside -dir",
		"ctx/ok":          "fine",
		"ctx/up":          "-> ../secret",
		"ctx/abs":         "-> " + filepath.Join(parent, "secret"),
		"ctx/sub/sneaky":  "-> ../../secret",
		"ctx/dangling":    "-> nowhere",
		"ctx/pipes/ok.go": "package ok",
	})
	if err := syscall.Mkfifo(filepath.Join(dir, "pipes", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		src, want string
	}{
		{"up", `invalid DockerConf.Copy[0]: source "up": a symlink leads outside -dir (to ` + filepath.Join(parent, "secret") + `); copy the files into -dir instead`},
		{"abs", `invalid DockerConf.Copy[0]: source "abs": a symlink leads outside -dir (to ` + filepath.Join(parent, "secret") + `)`},
		{"sub/sneaky", `invalid DockerConf.Copy[0]: source "sub/sneaky": a symlink leads outside -dir`},
		{"missing", `invalid DockerConf.Copy[0]: source "missing": not found in -dir ` + dir},
		{"dangling", `invalid DockerConf.Copy[0]: source "dangling": not found in -dir ` + dir},
		{"pipes", `invalid DockerConf.Copy[0]: source "pipes": pipes/fifo is a p---------; only files, directories and symlinks can be copied`},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			conf := DockerConf{From: "scratch", Copy: [][2]string{{tt.src, "x"}}, Cmd: "x"}
			_, err := buildContext(conf, "FROM scratch\n", proxy, dir)
			if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("buildContext(Copy %s) = %v\nwant an error starting with %q", tt.src, err, tt.want)
			}
		})
	}
}

// Build refuses bad input before it talks to Docker: these calls get no
// Docker client at all.
func TestBuildRefusesBeforeDocker(t *testing.T) {
	proxy := staticProxy(t)
	dir := t.TempDir()
	notELF := filepath.Join(dir, "proxy.sh")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	ok := Request{Conf: DockerConf{From: "scratch", Cmd: "./svc"}, Proxy: proxy, Dir: dir, Image: "physarum-test-x"}
	tests := []struct {
		name string
		edit func(*Request)
		want string
	}{
		{"no image name", func(r *Request) { r.Image = "" }, "invalid image name: missing"},
		{"image name with a space", func(r *Request) { r.Image = "a b" }, `invalid image name "a b": contains whitespace`},
		{"no proxy", func(r *Request) { r.Proxy = "" }, "invalid proxy binary: no path given"},
		{"no From", func(r *Request) { r.Conf.From = "" }, "invalid DockerConf.From: missing"},
		{"source escapes", func(r *Request) { r.Conf.Copy = [][2]string{{"../etc", "etc"}} }, `invalid DockerConf.Copy[0]: source "../etc" escapes -dir`},
		{"absolute source", func(r *Request) { r.Conf.Copy = [][2]string{{"/etc", "etc"}} }, `invalid DockerConf.Copy[0]: source "/etc" is an absolute path`},
		{"missing source", func(r *Request) { r.Conf.Copy = [][2]string{{"nope", "x"}} }, `invalid DockerConf.Copy[0]: source "nope": not found in -dir`},
		{"proxy not ELF", func(r *Request) { r.Proxy = notELF }, "invalid proxy binary " + notELF + ": not a Linux executable (ELF)"},
		{"proxy is a directory", func(r *Request) { r.Proxy = dir }, "invalid proxy binary " + dir + ": not a regular file"},
		{"proxy missing", func(r *Request) { r.Proxy = filepath.Join(dir, "nope") }, "open proxy binary: open " + filepath.Join(dir, "nope")},
		{"-dir missing", func(r *Request) { r.Dir = filepath.Join(dir, "nope") }, "open -dir " + filepath.Join(dir, "nope")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := ok
			tt.edit(&req)
			id, err := Build(context.Background(), nil, req)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Build = %q, %v\nwant an error starting with %q", id, err, tt.want)
			}
		})
	}
}

func TestDynamicProxyRefusedOnScratch(t *testing.T) {
	var dynamic string
	for _, p := range []string{"/bin/ls", "/usr/bin/env", "/bin/sh"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				dynamic = p
			}
		}
		f.Close()
		if dynamic != "" {
			break
		}
	}
	if dynamic == "" {
		t.Skip("no dynamically linked executable found on this host")
	}
	scratch := DockerConf{From: "scratch", Cmd: "x"}
	_, err := buildContext(scratch, "", dynamic, t.TempDir())
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "dynamically linked, and a FROM scratch image has no dynamic loader; build it static (CGO_ENABLED=0)") {
		t.Fatalf("dynamic proxy on scratch: %v", err)
	}
	based := DockerConf{From: "debian", Cmd: "x"}
	buf, err := buildContext(based, "", dynamic, t.TempDir())
	if err != nil {
		t.Fatalf("dynamic proxy on a base image: %v", err)
	}
	if _, ok := readTar(t, bytes.NewReader(buf.Bytes()))["proxy"]; !ok {
		t.Fatal("proxy missing from the build context")
	}
}
