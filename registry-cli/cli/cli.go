// Package cli is registry-cli: one file per command, each returning an
// error that Run turns into one line on stderr and an exit code (0 success,
// 1 failure, 2 usage).
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/registry"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Env is what the CLI reads and writes outside its arguments.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// usageError is a mistake in how the CLI was called (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis of the positional arguments
	summary string
	// help, when set, is printed by -help after the summary.
	help string
	// flags registers the command's own flags, if any.
	flags func(fs *flag.FlagSet, s *session)
	// run does the work; s.connect() gives a registry client when needed.
	run func(ctx context.Context, s *session, args []string) error
}

func commands() []*command {
	return []*command{addCommand(), updateCommand(), rolloutsCommand(), promoteCommand(), rollbackCommand(), getCommand(), historyCommand(), listCommand(), deleteCommand(),
		membersCommand(), nodesCommand(), instancesCommand(), deployCommand(), stopCommand(),
		scaleCommand(), autoscaleCommand(), statusCommand(), computesCommand(), computeCommand(),
		launchCommand(), launchedCommand(), instanceCommand(), actCommand(), forgetCommand(),
		eventsCommand(), callbacksCommand(), callbackCommand(), idCommand()}
}

// session holds the global options and, once connected, the client.
type session struct {
	env     Env
	node    *nodeflags.Flags
	timeout time.Duration
	json    bool

	p2p    *p2p.Node
	client *registry.Client
	// parent is the command's context before -timeout: what long work
	// that -timeout does not bound (an image build) runs under.
	parent context.Context
	// add's options
	add addOptions
}

const globalUsage = `Usage: registry-cli [OPTIONS] <command> [ARGS]

Adds, reads and deletes service definitions in the Physarum registry, sets
how many instances of a service to keep running and where (scale, computes)
or how that count follows the load (autoscale), launches instances by UUID
and acts on them (launch, act, forget), and shows their status, the
registry's members, the network's nodes and instances, and every change as
it happens (events).

Commands:
%s
Run 'registry-cli <command> -help' for a command's options (they may come
before or after its arguments; global OPTIONS come before the command).

OPTIONS:
`

// Run runs the CLI with args (without the program name) and returns the
// exit code.
func Run(ctx context.Context, args []string, env Env) int {
	s := &session{env: env}
	err := s.run(ctx, args)
	if s.p2p != nil {
		s.client.Close()
		_ = s.p2p.Close()
	}
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintln(env.Stderr, "registry-cli:", err)
		return ExitUsage
	default:
		fmt.Fprintln(env.Stderr, "registry-cli:", oneLine(err))
		return ExitFailure
	}
}

// oneLine keeps a failure to one line on stderr.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func (s *session) run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("registry-cli", flag.ContinueOnError)
	fs.SetOutput(s.env.Stderr)
	cmds := commands()
	fs.Usage = func() {
		var b strings.Builder
		for _, c := range cmds {
			fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
		}
		fmt.Fprintf(fs.Output(), globalUsage, b.String())
		fs.PrintDefaults()
	}
	// The CLI's own output is its answer; its logs (to stderr) only say
	// more when asked, with -log-level info or debug.
	s.node = nodeflags.Register(fs, "registry-cli", nodeflags.Defaults{CLI: true, LogLevel: "warn"})
	fs.DurationVar(&s.timeout, "timeout", 15*time.Second, "give up on the command after this long")
	fs.BoolVar(&s.json, "json", false, "print results as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if err := s.node.Validate(s.env.Getenv); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usagef("no command given")
	}
	name := fs.Arg(0)
	for _, c := range cmds {
		if c.name == name {
			return s.runCommand(ctx, c, fs.Args()[1:])
		}
	}
	return usagef("unknown command %q (commands: %s)", name, commandNames(cmds))
}

func commandNames(cmds []*command) string {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (s *session) runCommand(ctx context.Context, c *command, args []string) error {
	fs := flag.NewFlagSet("registry-cli "+c.name, flag.ContinueOnError)
	fs.SetOutput(s.env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: registry-cli [OPTIONS] %s\n\n%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
		fmt.Fprint(fs.Output(), c.help)
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	if c.flags != nil {
		c.flags(fs, s)
	}
	args, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	s.parent = ctx
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return c.run(ctx, s, args)
}

// parseInterleaved parses a command's options wherever they stand among
// its arguments, so that "scale hello 3 -compute site-a" reads as "scale
// -compute site-a hello 3", and returns the arguments in order. After
// "--" everything is an argument; so is a negative number ("-1"), which
// the command then refuses as a number rather than as an unknown option.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		for len(args) > 0 && isNegativeNumber(args[0]) {
			pos, args = append(pos, args[0]), args[1:]
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

func isNegativeNumber(s string) bool {
	return len(s) > 1 && s[0] == '-' && s[1] >= '0' && s[1] <= '9'
}

// connect joins the network and returns a registry client.
func (s *session) connect(ctx context.Context) (*registry.Client, error) {
	if s.client != nil {
		return s.client, nil
	}
	cfg, _, err := s.node.Resolve(s.env.Getenv)
	if err != nil {
		return nil, usageError{err.Error()} // a missing PSK or a bad key file: how it was called
	}
	if len(cfg.Bootstraps) == 0 {
		return nil, usagef("no bootstrap peer: give -bootstrap or set %s", nodeflags.EnvBootstraps)
	}
	// A CLI only dials out; listening on loopback keeps it off the LAN.
	cfg.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}
	log, err := s.node.Logger(s.env.Stderr)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	cfg.Logger = log
	n, err := p2p.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := n.Bootstrapped(ctx); err != nil {
		_ = n.Close()
		return nil, err
	}
	s.p2p = n
	s.client = registry.NewClient(n, registry.Options{Timeout: s.timeout, Logger: log})
	return s.client, nil
}

// printJSON writes v as indented JSON.
func (s *session) printJSON(v any) error {
	enc := json.NewEncoder(s.env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// open checks that a command has its n arguments, then connects to the
// registry: the first steps of every command that talks to it.
func (s *session) open(ctx context.Context, args []string, n int, synopsis string) (*registry.Client, error) {
	if err := wantArgs(args, n, synopsis); err != nil {
		return nil, err
	}
	return s.connect(ctx)
}

// show prints v as JSON with -json, and through table otherwise.
func show[T any](s *session, v T, table func(T) error) error {
	if s.json {
		return s.printJSON(v)
	}
	return table(v)
}

// wantArgs checks the count of positional arguments.
func wantArgs(args []string, n int, synopsis string) error {
	if len(args) != n {
		return usagef("want %d argument(s): %s (got %d)", n, synopsis, len(args))
	}
	return nil
}
