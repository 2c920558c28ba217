package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// options are the suite's flags.
type options struct {
	bin, services, out, dir string
	logLevel                string
	only                    []string
	quick, keep             bool
	docker                  string // auto, on or off
	scaleSizes              []int
	scaleFast               bool
	scaleBatch              int
	scaleIdle, scaleSoak    time.Duration
	command                 string
}

// scenario is one whole-system benchmark.
type scenario struct {
	name, title string
	// limit bounds the scenario's run time (full mode).
	limit time.Duration
	fn    func(ctx context.Context, r *run) error
}

var scenarios = []scenario{
	{"proxy", "added latency, throughput and memory of a client proxy + service proxy pair", 4 * time.Minute, runProxy},
	{"ceiling", "a raw libp2p stream under the PSK between two processes, and the proxy pair as a fraction of it", 2 * time.Minute, runCeiling},
	{"coldstart", "first request to a service with no instance", 4 * time.Minute, runColdStart},
	{"images", "Docker images between two daemons: transfer rate against a direct docker save | docker load, cold start of a node that lacks the image, layer deduplication", 6 * time.Minute, runImages},
	{"burst", "20 instances of one service asked for at once", 3 * time.Minute, runBurst},
	{"registry", "registry get/add over libp2p, registry-cli, registry-service memory", 4 * time.Minute, runRegistry},
	{"allocator", "deploy latency, 50 concurrent deploys, allocator memory", 5 * time.Minute, runAllocator},
	{"visible", "a new instance visible to another client", 3 * time.Minute, runVisible},
	{"desired", "desired state: scale 0 → 20, a lost instance and a lost node until replaced", 5 * time.Minute, runDesired},
	{"scale", "networks of 10 to 100 allocators on one machine", 12 * time.Minute, runScale},
	{"reconciler", "the reconciler's idle cost at 100 allocators and 200 services", 12 * time.Minute, runReconciler},
	{"events", "event stream and callbacks: latency, and 1,000 changes with 10 readers and 10 callbacks", 8 * time.Minute, runEvents},
	{"autoscale", "autoscaling under a load step ×2 and ×4: until the desired count moves, the new instances run and answer; back down after the window", 12 * time.Minute, runAutoscale},
	{"rollout", "rolling updates of 3 and 6 instances under 200 req/s: failed requests, added latency, duration and steps; a crashing version reverted", 10 * time.Minute, runRollout},
}

func scenarioNames() []string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	return out
}

// suite is one run of the benchmarks.
type suite struct {
	o     options
	dir   string // work directory: data and logs of every network
	runID string
	procs tracker

	// res holds the scenarios run so far (the ceiling reads the proxy's).
	res *Results

	docker    string // daemon version; "" when none answers
	dockerErr error

	imageMu    sync.Mutex
	imageBuilt bool

	mu          sync.Mutex
	dockerNodes []string // allocators that may have started containers
	outMu       sync.Mutex
}

// allocRuntime is the -runtime of allocators in scenarios that measure
// both runtimes: auto (Docker first) when a daemon answers.
func (s *suite) allocRuntime() string {
	if s.docker != "" {
		return "auto"
	}
	return "process"
}

func (s *suite) noteDockerNode(id string) {
	s.mu.Lock()
	s.dockerNodes = append(s.dockerNodes, id)
	s.mu.Unlock()
}

func (s *suite) printf(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Printf("[bench] "+format+"\n", args...)
}

// run is one scenario being run.
type run struct {
	s  *suite
	sc *Scenario
	// ctx is the scenario's context: once it has ended (Ctrl-C, time
	// limit), what is measured or fails is an artefact of the ending and
	// is not recorded.
	ctx context.Context
	mu  sync.Mutex
}

func (r *run) quick() bool { return r.s.o.quick }

// pick returns full, or quick in quick mode.
func (r *run) pick(full, quick int) int {
	if r.s.o.quick {
		return quick
	}
	return full
}

func (r *run) say(format string, args ...any) {
	r.s.printf("scenario %s: "+format, append([]any{r.sc.Name}, args...)...)
}

// failf records something that did not work.
func (r *run) failf(format string, args ...any) {
	if r.ctx != nil && r.ctx.Err() != nil {
		return
	}
	r.record(format, args...)
}

// record records a failure, whatever the context.
func (r *run) record(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.sc.Failures = append(r.sc.Failures, msg)
	r.mu.Unlock()
	r.say("FAILURE: %s", msg)
}

// notef records a remark that goes with the figures.
func (r *run) notef(format string, args ...any) {
	r.mu.Lock()
	r.sc.Notes = append(r.sc.Notes, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// skipped records why the scenario measured nothing, and says so.
func (r *run) skipped(format string, args ...any) {
	msg := "skipped: " + fmt.Sprintf(format, args...)
	r.notef("%s", msg)
	r.say("%s", msg)
}

// fig records a figure and prints it.
func (r *run) fig(f Figure) {
	if r.ctx != nil && r.ctx.Err() != nil {
		return
	}
	f.Value = orNotMeasured(f.Value)
	if f.Baseline != nil {
		f.Baseline.Value = orNotMeasured(f.Baseline.Value)
	}
	if f.Target != nil {
		m := f.Target.meets(f.Value)
		f.Met = &m
	}
	r.mu.Lock()
	r.sc.Figures = append(r.sc.Figures, f)
	r.mu.Unlock()
	line := figName(f) + " = " + fmtVal(f.Value, f.Unit)
	if f.Baseline != nil {
		line += fmt.Sprintf(" (%s: %s)", f.Baseline.Name, fmtVal(f.Baseline.Value, f.Baseline.Unit))
	}
	if f.Target != nil {
		verdict := "met"
		if !*f.Met {
			verdict = "MISSED"
		}
		line += fmt.Sprintf(" [target %s: %s]", f.Target.Text, verdict)
	}
	r.say("%s", line)
}

// runSuite runs the selected scenarios and writes the results. It returns
// the process's exit code.
func runSuite(ctx context.Context, o options) int {
	start := time.Now()
	s := &suite{o: o}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	s.runID = hex.EncodeToString(b)
	for _, bin := range []string{"registry-service", "allocator", "proxy", "registry-cli", "hello"} {
		if _, err := os.Stat(filepath.Join(o.bin, bin)); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s not found in %s: run 'make build' first (or give -bin)\n", bin, o.bin)
			return 1
		}
	}
	res := &Results{Command: o.command, Date: start.UTC(), Mode: "full", Machine: machineInfo()}
	if o.quick {
		res.Mode = "quick"
	}
	res.Machine.OtherProcs = otherPhysarumProcs()
	s.res = res
	switch o.docker {
	case "off":
		s.dockerErr = fmt.Errorf("disabled with -docker off")
	default:
		s.docker, s.dockerErr = dockerCheck(ctx)
		if s.dockerErr != nil && o.docker == "on" {
			fmt.Fprintf(os.Stderr, "bench: -docker on, but no Docker daemon answers: %v\n", s.dockerErr)
			return 1
		}
	}
	res.Machine.Docker = s.docker
	if o.dir != "" {
		s.dir = o.dir
		if err := os.MkdirAll(s.dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	} else {
		var err error
		if s.dir, err = os.MkdirTemp("", "physarum-bench-"); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	m := res.Machine
	s.printf("%s mode; %d CPUs (%s), %.1f GiB; load %s; %d other Physarum processes already running",
		res.Mode, m.NProc, m.CPUModel, float64(m.MemoryBytes)/(1<<30), m.LoadAvg, m.OtherProcs)
	if s.docker != "" {
		s.printf("Docker %s answers: Docker scenarios included", s.docker)
	} else {
		s.printf("no Docker (%v): Docker figures skipped", s.dockerErr)
	}
	s.printf("work directory %s", s.dir)

	defer s.cleanup()
	for _, sc := range scenarios {
		if len(o.only) > 0 && !slices.Contains(o.only, sc.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		res.Scenarios = append(res.Scenarios, s.runScenario(ctx, sc))
	}
	interrupted := ctx.Err() != nil
	s.cleanup()
	res.DurationSeconds = time.Since(start).Seconds()
	if st, err := os.Stat(filepath.Join(o.out, "go-bench.txt")); err == nil && st.ModTime().After(start.Add(-30*time.Minute)) {
		res.GoBench = "go-bench.txt"
	}
	if err := writeResults(o.out, res); err != nil {
		fmt.Fprintln(os.Stderr, "bench: write results:", err)
		return 1
	}
	s.printf("results in %s (results.json, results.md, *.png); run time %s",
		o.out, time.Since(start).Round(time.Second))
	failed := failedScenarios(res)
	switch {
	case interrupted:
		s.printf("interrupted: the results hold what ran until then")
		return 130
	case len(failed) > 0:
		s.printf("scenarios with failures: %s (see results.md)", strings.Join(failed, ", "))
		return 1
	}
	return 0
}

// runScenario runs one scenario under its time limit, catching panics.
func (s *suite) runScenario(ctx context.Context, def scenario) *Scenario {
	sc := &Scenario{Name: def.name, Title: def.title, Status: "ok"}
	r := &run{s: s, sc: sc}
	limit := def.limit
	if s.o.quick {
		limit = min(limit, 3*time.Minute)
	}
	if def.name == "scale" {
		limit += s.o.scaleSoak
	}
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	r.ctx = sctx
	start := time.Now()
	r.say("start (%s; time limit %s)", def.title, limit)
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			}
		}()
		return def.fn(sctx, r)
	}()
	switch {
	case ctx.Err() != nil:
		sc.Status = "interrupted"
	case err != nil:
		if sctx.Err() != nil {
			err = fmt.Errorf("%w (time limit %s reached)", err, limit)
		}
		r.record("%v", err)
	}
	if sc.Status == "ok" && len(sc.Failures) > 0 {
		sc.Status = "failed"
	}
	if left := s.procs.killAll(); left > 0 {
		r.record("%d processes were still running after the scenario and were killed", left)
		if sc.Status == "ok" {
			sc.Status = "failed"
		}
	}
	sc.DurationSeconds = time.Since(start).Seconds()
	r.say("done in %s: %s, %d figures, %d failures", since(start), sc.Status, len(sc.Figures), len(sc.Failures))
	return sc
}

// cleanup stops everything the suite started: processes, instance
// processes allocators left, containers and the image; then removes the
// work directory unless -keep. It is idempotent.
func (s *suite) cleanup() {
	if n := s.procs.killAll(); n > 0 {
		s.printf("cleanup: killed %d processes", n)
	}
	if s.dir != "" {
		if n := sweepInstances(s.dir, s.o.bin); n > 0 {
			s.printf("cleanup: killed %d leftover instance processes", n)
		}
	}
	if s.docker != "" {
		s.mu.Lock()
		nodes := slices.Clone(s.dockerNodes)
		s.mu.Unlock()
		s.imageMu.Lock()
		image := ""
		if s.imageBuilt {
			image = benchImage
			s.imageBuilt = false
		}
		s.imageMu.Unlock()
		if len(nodes) > 0 || image != "" {
			n, err := dockerSweep(nodes, s.runID, image)
			if n > 0 {
				s.printf("cleanup: removed %d leftover containers", n)
			}
			if err != nil {
				s.printf("cleanup: %v", err)
			}
		}
	}
	if s.dir != "" && s.o.dir == "" && !s.o.keep {
		if err := os.RemoveAll(s.dir); err != nil {
			s.printf("cleanup: remove %s: %v", s.dir, err)
		}
		s.dir = ""
	}
}

// otherPhysarumProcs counts Physarum daemons on the machine that this run
// did not start (other users of the machine skew the figures).
func otherPhysarumProcs() int {
	es, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	n := 0
	for _, e := range es {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		argv0 := filepath.Base(strings.SplitN(string(b), "\x00", 2)[0])
		switch argv0 {
		case "registry-service", "allocator", "proxy", "hello", "testtask", "demo":
			n++
		}
	}
	return n
}
