package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

const callbackHelp = `
A callback is a webhook: the registry POSTs to its URL, as JSON, every
event of one launched instance (-instance <uuid>), of one service
(-service <name>: its definition, desired counts, instances and launched
instances), or every event (neither). Each delivery is signed as Standard
Webhooks says (webhook-id, webhook-timestamp, webhook-signature) with the
callback's secret: add generates one unless -secret gives it (whsec_ and
the base64 of 16 to 64 bytes), and shows it this once. Delivery is at least
once, in order, retried after 1 s, 5 s, 30 s, 2 min, 10 min, then every 10
min; a callback failing for 24 h is disabled. 'registry-cli callbacks'
shows each one's state. Examples:
    registry-cli callback add https://ci.example.com/physarum -service hello
    registry-cli callback delete cb_0123456789abcdef
`

func callbacksCommand() *command {
	return &command{
		name: "callbacks", summary: "List callbacks (webhooks) with their delivery state",
		run: func(ctx context.Context, s *session, args []string) error {
			c, err := s.open(ctx, args, 0, "no arguments")
			if err != nil {
				return err
			}
			cbs, err := c.ListCallbacks(ctx)
			if err != nil {
				return err
			}
			return show(s, cbs, func(cbs []registry.Callback) error { return writeCallbacks(s.env.Stdout, cbs, time.Now()) })
		},
	}
}

// writeCallbacks prints callbacks as a table, by ID; now is what ages
// are counted from.
func writeCallbacks(w io.Writer, cbs []registry.Callback, now time.Time) error {
	if len(cbs) == 0 {
		_, err := fmt.Fprintln(w, "no callbacks")
		return err
	}
	cbs = slices.Clone(cbs)
	slices.SortFunc(cbs, func(a, b registry.Callback) int { return strings.Compare(a.ID, b.ID) })
	t := newTable(w, "ID", "EVENTS OF", "URL", "DELIVERED", "PENDING", "LAST SUCCESS", "STATE")
	for _, cb := range cbs {
		last := "-"
		if !cb.LastSuccess.IsZero() {
			last = age(now, cb.LastSuccess) + " ago"
		}
		t.row(cb.ID, callbackScope(cb), cb.URL, strconv.FormatInt(cb.Delivered, 10), strconv.Itoa(cb.Pending), last, callbackState(cb, now))
	}
	return t.flush()
}

// callbackScope says which events a callback receives.
func callbackScope(cb registry.Callback) string {
	switch {
	case cb.Instance != "":
		return "instance " + cb.Instance
	case cb.Service != "":
		return "service " + cb.Service
	}
	return "everything"
}

// callbackState is ok, failing (since when, and why) or disabled (why),
// and whether events were skipped.
func callbackState(cb registry.Callback, now time.Time) string {
	var st string
	switch {
	case cb.Disabled:
		st = "disabled: " + oneLineText(cb.DisabledReason)
	case !cb.FailingSince.IsZero():
		st = "failing for " + age(now, cb.FailingSince) + ": " + oneLineText(cb.LastError)
	case cb.LastError != "":
		st = "failing: " + oneLineText(cb.LastError)
	default:
		st = "ok"
	}
	if cb.Skipped != "" {
		st += "; " + oneLineText(cb.Skipped)
	}
	return st
}

const callbackSynopsis = "add <url> [-service <name> | -instance <uuid>] [-secret <whsec_...>] | delete <id>"

func callbackCommand() *command {
	var service, instance, secret string
	return &command{
		name: "callback", args: callbackSynopsis,
		summary: "Register (add) or remove (delete) a callback: a webhook the registry POSTs events to",
		help:    callbackHelp,
		flags: func(fs *flag.FlagSet, _ *session) {
			fs.StringVar(&service, "service", "", "add: deliver this service's events")
			fs.StringVar(&instance, "instance", "", "add: deliver this launched instance's events (its UUID)")
			fs.StringVar(&secret, "secret", "", "add: sign deliveries with this secret (default: a new one, shown once)")
		},
		run: func(ctx context.Context, s *session, args []string) error {
			if len(args) == 0 {
				return usagef("want a callback command: %s", callbackSynopsis)
			}
			switch sub, rest := args[0], args[1:]; sub {
			case "add":
				if len(rest) != 1 {
					return usagef("callback add wants <url> (got %d argument(s))", len(rest))
				}
				cb := registry.Callback{URL: rest[0], Service: service, Instance: instance, Secret: secret}
				if err := registry.ValidateCallback(&cb); err != nil {
					return err
				}
				c, err := s.connect(ctx)
				if err != nil {
					return err
				}
				out, err := c.AddCallback(ctx, cb)
				if err != nil {
					return err
				}
				return show(s, out, func(cb registry.Callback) error {
					_, err := fmt.Fprintf(s.env.Stdout, "added callback %s for %s of %s\nsecret: %s (shown this once: receivers verify deliveries with it)\n",
						cb.ID, callbackScope(cb), cb.URL, cb.Secret)
					return err
				})
			case "delete":
				if service != "" || instance != "" || secret != "" {
					return usagef("callback delete takes no -service, -instance or -secret")
				}
				if len(rest) != 1 {
					return usagef("callback delete wants <id> (got %d argument(s))", len(rest))
				}
				if err := registry.ValidateCallbackID(rest[0]); err != nil {
					return err
				}
				c, err := s.connect(ctx)
				if err != nil {
					return err
				}
				msg, err := c.DeleteCallback(ctx, rest[0])
				if err != nil {
					return err
				}
				if msg == "" {
					msg = "deleted callback " + rest[0]
				}
				return show(s, map[string]string{"Message": msg}, func(map[string]string) error {
					_, err := fmt.Fprintln(s.env.Stdout, msg)
					return err
				})
			}
			return usagef("unknown callback command %q: want %s", args[0], callbackSynopsis)
		},
	}
}
