package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/physarum-p2p/physarum/allocator/runtime"
)

// Log files in each instance directory. The process writes them directly
// (no pipe through the allocator, which would kill it with SIGPIPE when
// the allocator dies), so they are capped by copy and truncate.
const (
	stdoutLog = "stdout.log"
	stderrLog = "stderr.log"
)

// openLog opens an instance's log for appending, capping it first.
func openLog(dir, name string, maxBytes int64) (*os.File, error) {
	path := filepath.Join(dir, name)
	if err := capLog(path, maxBytes); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return f, nil
}

// capLog moves the last maxBytes of a log that has grown past maxBytes
// to <path>.1, replacing the previous one, and truncates the log. Writers
// opened it with O_APPEND, so they carry on at its new end; lines written
// between the copy and the truncation are lost.
func capLog(path string, maxBytes int64) error {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cap log: %w", err)
	}
	if info.Size() <= maxBytes {
		return nil
	}
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cap log: %w", err)
	}
	defer src.Close()
	if _, err := src.Seek(-maxBytes, io.SeekEnd); err != nil {
		return fmt.Errorf("cap log: %w", err)
	}
	dst, err := os.OpenFile(path+".1", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cap log: %w", err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("cap log: copy to %s.1: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("cap log: %w", err)
	}
	if err := os.Truncate(path, 0); err != nil {
		return fmt.Errorf("cap log: %w", err)
	}
	return nil
}

// Tail returns the last n lines of the instance's stderr.log.
func (r *Runtime) Tail(_ context.Context, id string, n int) (string, error) {
	b, err := os.ReadFile(filepath.Join(r.dir, id, stderrLog))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", runtime.ErrNotFound
		}
		return "", err
	}
	return lastLines(string(b), n), nil
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
