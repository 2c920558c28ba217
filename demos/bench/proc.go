package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/physarum-p2p/physarum/common/launch"
)

// tracker remembers every process the suite started, so that nothing
// outlives the run, whatever happens to it.
type tracker struct {
	mu  sync.Mutex
	all []*launch.Proc
}

// spawn starts bin with args and env (added to ours); its stdout goes to
// name.out and its log (stderr) to name.log in dir.
func (t *tracker) spawn(dir, name, bin string, args, env []string) (*launch.Proc, error) {
	p, err := launch.Start(launch.Cmd{
		Name: name, Path: bin, Args: args, Env: append(os.Environ(), env...),
		OutFile: filepath.Join(dir, name+".out"),
		ErrFile: filepath.Join(dir, name+".log"),
	})
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.all = append(t.all, p)
	t.mu.Unlock()
	return p, nil
}

// problems returns up to max lines of p's log that report an error or a
// warning.
func problems(p *launch.Proc, max int) []string {
	var out []string
	for _, l := range readLines(p.ErrFile) {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") ||
			strings.Contains(l, "panic") || strings.Contains(l, "fatal") {
			out = append(out, l)
			if len(out) == max {
				break
			}
		}
	}
	return out
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// stopAll stops the given processes in parallel and returns those that
// had to be killed.
func stopAll(ps []*launch.Proc, timeout time.Duration) []*launch.Proc {
	var mu sync.Mutex
	var killed []*launch.Proc
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.Stop(timeout) {
				mu.Lock()
				killed = append(killed, p)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return killed
}

// killAll kills whatever the suite started that still runs.
func (t *tracker) killAll() int {
	t.mu.Lock()
	ps := append([]*launch.Proc(nil), t.all...)
	t.mu.Unlock()
	n := 0
	for _, p := range ps {
		if !p.Exited() {
			n++
			p.KillGroup()
		}
	}
	return n
}

// sweepInstances kills instance processes that allocators under dir
// started and left behind (an allocator that was killed leaves its
// instances running, by design, for the next one to adopt). It reads the
// process runtime's state.json files and kills only processes whose
// command is under binDir.
func sweepInstances(dir, binDir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "state.json" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var rec struct {
			Pid int `json:"pid"`
		}
		if json.Unmarshal(b, &rec) != nil || rec.Pid <= 1 {
			return nil
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", rec.Pid))
		if err != nil || !strings.HasPrefix(string(cmdline), binDir+"/") {
			return nil
		}
		_ = syscall.Kill(-rec.Pid, syscall.SIGKILL)
		_ = syscall.Kill(rec.Pid, syscall.SIGKILL)
		n++
		return nil
	})
	return n
}
