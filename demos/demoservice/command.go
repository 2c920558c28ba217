package demoservice

// This file is every demo service's command line and main: the -listen
// flag and SERVICE_PORT they share, how a bad command line is reported,
// and the exit codes.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// ErrFlags means the command line was wrong and the error has been
// reported on stderr; Main exits 2.
var ErrFlags = errors.New("bad command line")

// Command is the command line of a demo service: the -listen flag and
// the SERVICE_PORT every demo has, and the service's own flags.
type Command struct {
	// Name is the binary's name: the flag set's, and the prefix of the
	// messages.
	Name string
	// Usage is what -help prints before the flags' defaults: the
	// synopsis, the endpoints and the environment, ending in "Flags:\n".
	Usage string
	// Flags, when set, defines the service's own flags on fs, before the
	// command line is parsed.
	Flags func(fs *flag.FlagSet)
	// Check, when set, checks the values of the service's own flags once
	// the command line is parsed (fs tells which were set). Its error is
	// a command-line error: reported as "<name>: <error>", and Parse
	// returns ErrFlags.
	Check func(fs *flag.FlagSet) error
}

// Config is what every demo service runs with.
type Config struct {
	Listen string // the address to listen on (see ListenAddr)
}

// Parse reads the command line args and the environment (through getenv,
// os.Getenv or a stand-in for tests) into the Config every demo shares;
// the service's own flags land where c.Flags put them.
//
// It returns flag.ErrHelp after printing the usage for -help, and
// ErrFlags after reporting a bad command line on stderr (a flag that
// does not parse, an argument, a bad -listen, or c.Check's error); any
// other error is about the environment (SERVICE_PORT), one line for
// Main to report.
func (c Command) Parse(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), c.Usage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "", "address to listen on, e.g. 127.0.0.1:8080 (default 127.0.0.1:$SERVICE_PORT)")
	if c.Flags != nil {
		c.Flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, err
		}
		return Config{}, ErrFlags // the flag package has reported it, with the usage
	}
	var flagErr error
	switch {
	case fs.NArg() > 0:
		flagErr = fmt.Errorf("unexpected argument %q; see %s -help", fs.Arg(0), c.Name)
	case *listen != "":
		flagErr = CheckListen(*listen)
	}
	if flagErr == nil && c.Check != nil {
		flagErr = c.Check(fs)
	}
	if flagErr != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.Name, flagErr)
		return Config{}, ErrFlags
	}
	addr, err := ListenAddr(*listen, getenv)
	if err != nil {
		return Config{}, err
	}
	return Config{Listen: addr}, nil
}

// InstanceID names this instance: $PHYSARUM_INSTANCE_ID, else the host
// name (a container's ID under Docker), else "unknown". getenv and
// hostname are os.Getenv and os.Hostname, or stand-ins for tests.
func InstanceID(getenv func(string) string, hostname func() (string, error)) string {
	if id := getenv("PHYSARUM_INSTANCE_ID"); id != "" {
		return id
	}
	if h, err := hostname(); err == nil && h != "" {
		return h
	}
	return "unknown"
}

// Main runs the demo service name and returns its exit code, for main to
// pass to os.Exit. parse reads the command line (see Command.Parse);
// run serves with what parse read until its context ends, on SIGTERM or
// SIGINT, with a logger that writes text to stderr, each line tagged
// service=name.
//
// The exit code is 0 after -help (parse returned flag.ErrHelp) or once
// run returns nil; 2 for a bad command line (ErrFlags, already
// reported); 1 for any other error of parse or run, written to stderr as
// "<name>: <error>".
func Main[C any](name string, stderr io.Writer, parse func() (C, error), run func(context.Context, C, *slog.Logger) error) int {
	cfg, err := parse()
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrFlags):
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	logger := slog.New(slog.NewTextHandler(stderr, nil)).With("service", name)
	err = run(ctx, cfg, logger)
	stop()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
