package process

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
)

// clockTicks is the unit of the times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 a second for every architecture it exports /proc
// times on.
const clockTicks = 100

// CPUSeconds returns the CPU time, user and system, the instance's current
// run has used: that of every live process of its process group (the
// command and whatever it started and kept in the group), plus what the
// children they have reaped used. A restart is a new group, so the figure
// starts again from about 0; a process that left the group (setsid) is
// not counted. It fails while the instance is not running.
//
// It reads the stat file of every process this user can see, which takes
// about a millisecond per few hundred processes.
func (r *Runtime) CPUSeconds(ctx context.Context, id string) (float64, error) {
	inst, err := r.get(id)
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	inst.mu.Lock()
	p := inst.proc
	inst.mu.Unlock()
	if p == nil {
		return 0, fmt.Errorf("cpu time of %s: not running", id)
	}
	ticks, err := groupTicks(ctx, p.pid)
	if err != nil {
		return 0, fmt.Errorf("cpu time of %s: %w", id, err)
	}
	return float64(ticks) / clockTicks, nil
}

// groupTicks sums utime, stime, cutime and cstime (fields 14 to 17 of
// /proc/<pid>/stat, in clock ticks) over the processes of group pgid
// (field 5).
func groupTicks(ctx context.Context, pgid int) (uint64, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	var sum uint64
	found := false
	for _, name := range names {
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // gone since the listing
		}
		group, ticks, ok := parseStatTicks(b)
		if ok && group == pgid {
			sum += ticks
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("no process in group %d", pgid)
	}
	return sum, nil
}

// parseStatTicks reads the process group and the sum of utime, stime,
// cutime and cstime from the contents of /proc/<pid>/stat. Fields are
// counted from the last ')', as the command name (field 2) may hold
// spaces and parentheses.
func parseStatTicks(b []byte) (pgid int, ticks uint64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(b[i+1:]) // fields[0] is field 3
	if len(fields) < 15 {
		return 0, 0, false
	}
	pgid, err := strconv.Atoi(string(fields[2]))
	if err != nil {
		return 0, 0, false
	}
	for _, f := range fields[11:15] {
		n, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		ticks += n
	}
	return pgid, ticks, true
}
