package process

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/common/backoff"
)

const stateFile = "state.json"

// record is an instance's state.json: what a later runtime needs to adopt
// it.
type record struct {
	Spec   runtime.Spec      `json:"spec"`
	Labels map[string]string `json:"labels"`
	State  runtime.State     `json:"state"`
	// Pid and StartTime name the last process started (StartTime is field
	// 22 of /proc/<pid>/stat, which tells the process from a later one
	// that reuses its pid).
	Pid       int       `json:"pid"`
	StartTime uint64    `json:"start_time"`
	StartedAt time.Time `json:"started_at"`
	Restarts  int       `json:"restarts"`
	ExitCode  int       `json:"exit_code"`
	// Pending means the last process exited, the restart was counted,
	// and the next run has not started yet.
	Pending bool `json:"pending,omitempty"`
	// Stopping means Stop or Remove was called: never restart.
	Stopping bool `json:"stopping,omitempty"`
}

func readRecord(dir string) (record, error) {
	var rec record
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return rec, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("read state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return rec, nil
}

// instance is one instance known to the runtime. Its supervisor goroutine
// runs from Start (or adoption) until the instance is down for good or
// the runtime closes.
type instance struct {
	dir string
	log *slog.Logger

	// stopCh is closed by the first Stop or Remove; done once the instance
	// is down for good.
	stopCh chan struct{}
	done   chan struct{}

	mu   sync.Mutex
	rec  record
	proc *proc // the running process; nil between runs and once exited

	restart backoff.Backoff // delay before the next restart (supervisor only)
}

func newInstance(dir string, rec record, log *slog.Logger) *instance {
	inst := &instance{
		dir:    dir,
		log:    log.With("instance_id", rec.Spec.ID),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		rec:    rec,
	}
	if rec.Stopping {
		close(inst.stopCh)
	}
	if rec.State == runtime.StateExited {
		close(inst.done)
	}
	return inst
}

// status reports the instance. Callers hold mu.
func (inst *instance) status() runtime.Status {
	return runtime.Status{
		ID:        inst.rec.Spec.ID,
		State:     inst.rec.State,
		Labels:    maps.Clone(inst.rec.Labels),
		StartedAt: inst.rec.StartedAt,
		Restarts:  inst.rec.Restarts,
		ExitCode:  inst.rec.ExitCode,
		Ref:       "pid " + strconv.Itoa(inst.rec.Pid),
	}
}

// persist writes state.json atomically. Callers hold mu.
func (inst *instance) persist() error {
	b, err := json.MarshalIndent(inst.rec, "", "  ")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	tmp := filepath.Join(inst.dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil { // holds the instance's environment: PSK, proxy key
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(inst.dir, stateFile)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// save persists, logging a failure: the callers are goroutines with no
// one to return it to, and the state in memory is still right.
func (inst *instance) save() {
	if err := inst.persist(); err != nil {
		inst.log.Warn("save instance state", "err", err)
	}
}

// setRunning records p as the current run. Callers hold mu.
func (inst *instance) setRunning(p *proc) {
	inst.proc = p
	inst.rec.Pid = p.pid
	inst.rec.StartTime = p.startTime
	inst.rec.StartedAt = p.started.UTC()
	inst.rec.Pending = false
}

// requestStop marks the instance as never to be restarted. Callers hold
// mu.
func (inst *instance) requestStop() {
	if inst.rec.Stopping {
		return
	}
	inst.rec.Stopping = true
	close(inst.stopCh)
	inst.save()
}

// signal sends sig to the running process group, if any. Callers hold mu,
// which keeps the supervisor from reaping the process meanwhile.
func (inst *instance) signal(sig syscall.Signal) {
	if inst.proc != nil {
		inst.proc.signalGroup(sig)
	}
}

// markExited records that the instance is down for good and wakes its
// waiters. Callers hold mu.
func (inst *instance) markExited() {
	if inst.rec.State == runtime.StateExited {
		return
	}
	inst.rec.State = runtime.StateExited
	inst.rec.Pending = false
	inst.save()
	close(inst.done)
}
