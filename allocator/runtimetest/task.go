package runtimetest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Environment variables the test task reads.
const (
	// EnvTask selects the mode (one of the Mode constants).
	EnvTask = "PHYSARUM_TESTTASK"
	// EnvCode is the exit status of ModeExit (default 3).
	EnvCode = "PHYSARUM_TESTTASK_CODE"
	// EnvCrashes is how many starts of ModeCrash exit with status 3.
	EnvCrashes = "PHYSARUM_TESTTASK_CRASHES"
	// EnvReply is the body ModeHTTP answers with.
	EnvReply = "PHYSARUM_TESTTASK_REPLY"
	// EnvBytes is how much ModeSpam writes to stdout.
	EnvBytes = "PHYSARUM_TESTTASK_BYTES"
	// EnvPort is the port the task listens on, where a mode listens.
	EnvPort = "PORT"
)

// Modes of the test task.
const (
	// ModeSleep runs until SIGTERM or SIGINT, then exits 0. With $PORT set
	// it listens there, so that a test can tell it is up.
	ModeSleep = "sleep"
	// ModeHTTP answers every request on $PORT with $PHYSARUM_TESTTASK_REPLY
	// and exits 0 on SIGTERM.
	ModeHTTP = "http"
	// ModeExit exits at once with $PHYSARUM_TESTTASK_CODE.
	ModeExit = "exit"
	// ModeCrash exits 3 on its first $PHYSARUM_TESTTASK_CRASHES starts,
	// then behaves as ModeSleep. It counts starts in the file StartsFile in
	// its working directory, which both runtimes keep across restarts (the
	// instance directory; the container's filesystem).
	ModeCrash = "crash"
	// ModeIgnoreTerm ignores SIGTERM and then listens on $PORT, so that a
	// test knows the signal is ignored once it can connect.
	ModeIgnoreTerm = "ignore-term"
	// ModeEnv prints its environment, one variable a line, sorted, and
	// exits 0.
	ModeEnv = "env"
	// ModeFork starts a copy of itself in ModeSleep (without $PORT), writes
	// the copy's pid to ChildPidFile in its working directory, and then
	// behaves as ModeSleep.
	ModeFork = "fork"
	// ModeSpam writes $PHYSARUM_TESTTASK_BYTES bytes to stdout, then
	// behaves as ModeSleep.
	ModeSpam = "spam"
	// ModeSpin keeps one core busy until SIGTERM or SIGINT, then exits 0
	// (for tests of CPU accounting).
	ModeSpin = "spin"
)

// Files the test task keeps in its working directory.
const (
	StartsFile   = "testtask-starts"
	ChildPidFile = "testtask-child.pid"
)

// RunTask runs the test task if $PHYSARUM_TESTTASK names a mode, and
// returns its exit status; ok is false when the variable is unset. It lets
// a test binary be its own workload (the pattern of Nomad's
// helper/testtask):
//
//	func TestMain(m *testing.M) {
//		if code, ok := runtimetest.RunTask(); ok {
//			os.Exit(code)
//		}
//		goleak.VerifyTestMain(m)
//	}
//
// The same task is the entrypoint of the Docker tests' image
// (runtimetest/testtask).
func RunTask() (code int, ok bool) {
	mode, ok := os.LookupEnv(EnvTask)
	if !ok {
		return 0, false
	}
	if err := runTask(mode); err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			return int(exit), true
		}
		fmt.Fprintf(os.Stderr, "testtask %s: %v\n", mode, err)
		return 1, true
	}
	return 0, true
}

// exitError is a status a mode exits with on purpose.
type exitError int

func (e exitError) Error() string { return "exit " + strconv.Itoa(int(e)) }

func runTask(mode string) error {
	fmt.Fprintf(os.Stdout, "testtask %s: pid %d\n", mode, os.Getpid())
	switch mode {
	case ModeSleep:
		return sleep()
	case ModeHTTP:
		return serveHTTP()
	case ModeExit:
		code := 3
		if s := os.Getenv(EnvCode); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("%s: %w", EnvCode, err)
			}
			code = n
		}
		return exitError(code)
	case ModeCrash:
		return crash()
	case ModeIgnoreTerm:
		signal.Ignore(syscall.SIGTERM)
		return listenForever()
	case ModeEnv:
		env := os.Environ()
		slices.Sort(env)
		fmt.Fprintln(os.Stdout, strings.Join(env, "\n"))
		return nil
	case ModeFork:
		return fork()
	case ModeSpin:
		return spin()
	case ModeSpam:
		n, err := strconv.Atoi(os.Getenv(EnvBytes))
		if err != nil {
			return fmt.Errorf("%s: %w", EnvBytes, err)
		}
		line := strings.Repeat("x", 99) + "\n"
		for written := 0; written < n; written += len(line) {
			if _, err := os.Stdout.WriteString(line); err != nil {
				return err
			}
		}
		return sleep()
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
}

// sleep waits for SIGTERM or SIGINT, listening on $PORT if set.
func sleep() error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if port := taskPort(); port != "" {
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return err
		}
		defer ln.Close()
		go acceptAndClose(ln)
	}
	<-sigs
	return nil
}

// spin burns CPU until SIGTERM or SIGINT.
func spin() error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	for n := uint64(0); ; n++ {
		if n%(1<<20) == 0 {
			select {
			case <-sigs:
				return nil
			default:
			}
		}
	}
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// listenForever listens on $PORT until killed.
func listenForever() error {
	ln, err := net.Listen("tcp", ":"+taskPort())
	if err != nil {
		return err
	}
	acceptAndClose(ln)
	select {}
}

func serveHTTP() error {
	ln, err := net.Listen("tcp", ":"+taskPort())
	if err != nil {
		return err
	}
	reply := os.Getenv(EnvReply)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ?sleep=<duration> holds the answer back: a request in flight.
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 {
			time.Sleep(min(d, time.Minute))
		}
		fmt.Fprint(w, reply)
	})}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func crash() error {
	crashes, err := strconv.Atoi(os.Getenv(EnvCrashes))
	if err != nil {
		return fmt.Errorf("%s: %w", EnvCrashes, err)
	}
	b, _ := os.ReadFile(StartsFile) // missing on the first start
	starts, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	starts++
	if err := os.WriteFile(StartsFile, []byte(strconv.Itoa(starts)), 0o644); err != nil {
		return err
	}
	if starts <= crashes {
		return exitError(3)
	}
	return sleep()
}

func fork() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(exe)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != EnvTask && k != EnvPort {
			child.Env = append(child.Env, kv)
		}
	}
	child.Env = append(child.Env, EnvTask+"="+ModeSleep)
	child.Stdout, child.Stderr = os.Stdout, os.Stderr
	if err := child.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(ChildPidFile, []byte(strconv.Itoa(child.Process.Pid)), 0o644); err != nil {
		return err
	}
	return sleep()
}

// taskPort is $PORT, else $SERVICE_PORT: inside an instance, where the
// allocator sets SERVICE_PORT, the task needs no PORT of its own.
func taskPort() string {
	if p := os.Getenv(EnvPort); p != "" {
		return p
	}
	return os.Getenv("SERVICE_PORT")
}
