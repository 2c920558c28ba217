package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dist is a set of latency samples.
type dist []time.Duration

// A quantile is a duration read from a dist, in nanoseconds, or
// notMeasured when the dist has no samples: a time.Duration would have to
// say 0, which reads as a measurement and meets every "<" target.
type quantile float64

// at returns the p-th percentile (0 < p <= 100) by the nearest-rank
// method: the smallest sample with at least p% of the samples at or below
// it; notMeasured when d is empty.
func (d dist) at(p float64) quantile {
	if len(d) == 0 {
		return quantile(notMeasured)
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return quantile(s[max(0, min(len(s)-1, i))])
}

func (d dist) p50() quantile { return d.at(50) }
func (d dist) p99() quantile { return d.at(99) }

// us, msec and secs convert a duration, or a quantile (which stays
// notMeasured), to a figure's unit.
func us[D time.Duration | quantile](d D) float64   { return float64(d) / float64(time.Microsecond) }
func msec[D time.Duration | quantile](d D) float64 { return float64(d) / float64(time.Millisecond) }
func secs[D time.Duration | quantile](d D) float64 { return float64(d) / float64(time.Second) }

// mb converts KiB (what /proc reports) to MB (10^6 bytes).
func mb(kib uint64) float64 { return float64(kib) * 1024 / 1e6 }

// procFields reads a /proc file of "key: value [unit]" lines (status,
// io, meminfo) into the first number of each value.
func procFields(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if f := strings.Fields(v); len(f) > 0 {
			n, _ := strconv.ParseUint(f[0], 10, 64)
			out[k] = n
		}
	}
	return out, nil
}

// statusOf reads /proc/<pid>/status; VmRSS is always set (KiB).
func statusOf(pid int) (map[string]uint64, error) {
	st, err := procFields(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	if st["VmRSS"] == 0 {
		return nil, fmt.Errorf("no VmRSS for pid %d", pid)
	}
	return st, nil
}

// memOf reads VmRSS and VmHWM (peak RSS) of pid, in KiB.
func memOf(pid int) (rss, hwm uint64, err error) {
	st, err := statusOf(pid)
	if err != nil {
		return 0, 0, err
	}
	return st["VmRSS"], st["VmHWM"], nil
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTick = 100

// statOf reads parent pid and user+system CPU time of pid.
func statOf(pid int) (ppid int, cpu time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command may hold spaces
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(3) ppid(4) ... utime(14) stime(15).
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return ppid, time.Duration(ut+st) * time.Second / clockTick, nil
}

// ioOf reads the bytes pid has passed through read and write system calls
// (rchar, wchar): sockets, pipes and files alike.
func ioOf(pid int) (rchar, wchar uint64, err error) {
	io, err := procFields(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0, err
	}
	return io["rchar"], io["wchar"], nil
}

// fdsOf counts pid's open file descriptors.
func fdsOf(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(es), nil
}

// systemFDs reads the number of file handles allocated system-wide.
func systemFDs() (int, error) {
	const path = "/proc/sys/fs/file-nr"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("parse %s: empty", path)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return n, nil
}

// newHTTPClient returns a client that keeps connections to every host it
// talks to, as a real client of a proxy would.
func newHTTPClient(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DisableCompression:  true,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Minute,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// do sends one request and reads the whole answer. It fails unless the
// status is 200.
func do(ctx context.Context, hc *http.Client, method, url string, body []byte) (time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return time.Since(start), err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return time.Since(start), fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("%s %s: read answer: %w", method, url, err)
	}
	if body != nil && n != int64(len(body)) {
		return took, fmt.Errorf("%s %s: %d bytes came back, sent %d", method, url, n, len(body))
	}
	return took, nil
}

// get does a GET and returns the status and (up to 64 KiB of) the body.
func get(ctx context.Context, hc *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), nil
}

// phases accumulates what one way of sending requests did over several
// phases.
type phases struct {
	lat      dist
	elapsed  time.Duration
	errs     int
	firstErr error
}

// rate is the successful requests per second, notMeasured when no time
// has passed (no phase ran).
func (s *phases) rate() float64 {
	if s.elapsed <= 0 {
		return notMeasured
	}
	return float64(len(s.lat)) / s.elapsed.Seconds()
}

// phase runs one from clients goroutines, back to back, until d has passed.
func (s *phases) phase(ctx context.Context, clients int, d time.Duration, one func() (time.Duration, error)) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local dist
			errs := 0
			var first error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				took, err := one()
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				local = append(local, took)
			}
			mu.Lock()
			s.lat = append(s.lat, local...)
			s.errs += errs
			if s.firstErr == nil {
				s.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.elapsed += time.Since(start)
}

// procCPU adds up the CPU time (user + system) that named processes spend
// during measured spans, to say what the work done meanwhile cost each.
type procCPU []procSpent

type procSpent struct {
	name  string
	pid   int
	spent time.Duration
}

func (p *procCPU) add(name string, pid int) { *p = append(*p, procSpent{name: name, pid: pid}) }

// during runs fn and adds what each process spent meanwhile. A process
// whose CPU cannot be read (it exited) adds nothing.
func (p procCPU) during(fn func()) {
	before := p.read()
	fn()
	for i, now := range p.read() {
		if now >= 0 && before[i] >= 0 {
			p[i].spent += now - before[i]
		}
	}
}

func (p procCPU) read() []time.Duration {
	out := make([]time.Duration, len(p))
	for i, ps := range p {
		out[i] = -1
		if _, cpu, err := statOf(ps.pid); err == nil {
			out[i] = cpu
		}
	}
	return out
}

// spentBy is what the process named name has spent in all spans.
func (p procCPU) spentBy(name string) time.Duration {
	for _, ps := range p {
		if ps.name == name {
			return ps.spent
		}
	}
	return 0
}

// perRequest is each process's CPU per request, in µs, over n requests.
func (p procCPU) perRequest(n int) map[string]float64 {
	out := make(map[string]float64, len(p))
	for _, ps := range p {
		if n > 0 {
			out[ps.name] = float64(ps.spent.Microseconds()) / float64(n)
		}
	}
	return out
}
