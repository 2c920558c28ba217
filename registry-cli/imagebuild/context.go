package imagebuild

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"
)

// buildContext returns the tar stream Build sends to the daemon: the
// Dockerfile, the proxy, and every Copy source under files/. Only these
// files are read; nothing outside dir is (os.Root refuses paths and
// symlinks that leave it).
func buildContext(c DockerConf, dockerfile, proxy, dir string) (*bytes.Buffer, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open -dir %s: %w", dir, err)
	}
	defer root.Close()

	var buf bytes.Buffer
	w := &contextWriter{tw: tar.NewWriter(&buf), seen: map[string]bool{}}
	now := time.Now()
	if err := w.header(&tar.Header{Name: dockerfileName, Mode: 0o644, Size: int64(len(dockerfile)), ModTime: now}); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w.tw, dockerfile); err != nil {
		return nil, fmt.Errorf("write Dockerfile to the build context: %w", err)
	}
	if err := w.proxy(proxy, c.isScratch()); err != nil {
		return nil, err
	}
	for i, pair := range c.Copy {
		if err := w.source(root, dir, pair[0]); err != nil {
			return nil, fmt.Errorf("%w DockerConf.Copy[%d]: %w", ErrInvalid, i, err)
		}
	}
	if err := w.tw.Close(); err != nil {
		return nil, fmt.Errorf("finish the build context: %w", err)
	}
	return &buf, nil
}

type contextWriter struct {
	tw   *tar.Writer
	seen map[string]bool // names written; Copy sources may overlap
}

func (w *contextWriter) header(h *tar.Header) error {
	if h.Typeflag == 0 {
		h.Typeflag = tar.TypeReg
	}
	if err := w.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write %s to the build context: %w", h.Name, err)
	}
	w.seen[h.Name] = true
	return nil
}

// proxy adds the proxy binary, executable. It must be a Linux (ELF)
// executable, and a static one in a FROM scratch image, which has no
// dynamic loader: a dynamic one would fail there with a baffling "no such
// file or directory".
func (w *contextWriter) proxy(file string, scratch bool) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open proxy binary: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat proxy binary: %w", err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%w proxy binary %s: not a regular file", ErrInvalid, file)
	}
	exe, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("%w proxy binary %s: not a Linux executable (ELF): %w", ErrInvalid, file, err)
	}
	for _, p := range exe.Progs {
		if p.Type == elf.PT_INTERP && scratch {
			return fmt.Errorf("%w proxy binary %s: dynamically linked, and a FROM scratch image has no dynamic loader; build it static (CGO_ENABLED=0)", ErrInvalid, file)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read proxy binary: %w", err)
	}
	if err := w.header(&tar.Header{Name: proxyName, Mode: 0o755, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
		return err
	}
	if _, err := io.CopyN(w.tw, f, info.Size()); err != nil {
		return fmt.Errorf("read proxy binary %s: %w", file, err)
	}
	return nil
}

// source adds the Copy source src (relative to the root dir) under
// files/, recursively for a directory.
func (w *contextWriter) source(root *os.Root, dir, src string) error {
	name := filepath.ToSlash(filepath.Clean(src))
	info, err := root.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("source %q: not found in -dir %s", src, dir)
	}
	if err != nil {
		if outside := outsideDir(dir, name); outside != "" {
			return fmt.Errorf("source %q: a symlink leads outside -dir (to %s); copy the files into -dir instead", src, outside)
		}
		return fmt.Errorf("source %q: %w", src, err)
	}
	if !info.IsDir() {
		return w.file(root, name, info)
	}
	return fs.WalkDir(root.FS(), name, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("source %q: %w", src, err)
		}
		switch {
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("source %q: %w", src, err)
			}
			return w.dir(p, info)
		case d.Type()&fs.ModeSymlink != 0:
			return w.symlink(root, p)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("source %q: %w", src, err)
			}
			return w.file(root, p, info)
		default:
			return fmt.Errorf("source %q: %s is a %s; only files, directories and symlinks can be copied", src, p, d.Type())
		}
	})
}

// outsideDir returns where name (relative to dir) resolves to when a
// symlink takes it outside dir, or "" when it does not.
func outsideDir(dir, name string) string {
	base, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	resolved, err := filepath.EvalSymlinks(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		return ""
	}
	if rel, err := filepath.Rel(base, resolved); err != nil || !filepath.IsLocal(rel) {
		return resolved
	}
	return ""
}

func (w *contextWriter) dir(p string, info fs.FileInfo) error {
	name := path.Join(filesDir, p) + "/"
	if w.seen[name] {
		return nil
	}
	return w.header(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()})
}

// symlink keeps a symlink inside a copied directory as a symlink, as
// docker build does; its target is resolved in the image, not on this host.
func (w *contextWriter) symlink(root *os.Root, p string) error {
	name := path.Join(filesDir, p)
	if w.seen[name] {
		return nil
	}
	target, err := root.Readlink(p)
	if err != nil {
		return fmt.Errorf("read symlink %s: %w", p, err)
	}
	info, err := root.Lstat(p)
	if err != nil {
		return fmt.Errorf("stat symlink %s: %w", p, err)
	}
	return w.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: info.ModTime()})
}

func (w *contextWriter) file(root *os.Root, p string, info fs.FileInfo) error {
	name := path.Join(filesDir, p)
	if w.seen[name] {
		return nil
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is a %s; only files, directories and symlinks can be copied", p, info.Mode().Type())
	}
	f, err := root.Open(p)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	// Size from the open file: the one whose bytes are copied.
	if info, err = f.Stat(); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	if err := w.header(&tar.Header{Name: name, Mode: int64(info.Mode().Perm()), Size: info.Size(), ModTime: info.ModTime()}); err != nil {
		return err
	}
	if _, err := io.CopyN(w.tw, f, info.Size()); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	return nil
}
