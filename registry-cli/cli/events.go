package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/physarum-p2p/physarum/registry"
)

const eventsHelp = `
Prints the registry's events: every change of services, desired counts,
computes, nodes, instances, launched instances, autoscaling and rollouts,
one line each:
    <index> <topic> <type> <key> [<state, name, number or connector>]
e.g. "12345 instance updated hello/hello-1a2b3c4d running". An index is
the registry's revision: -since <index> prints every event after it, in
order, each once (a stream that breaks is resumed on another registry);
-follow then waits for the changes to come, until interrupted. Types are
created, updated, deleted, and lost for an instance whose node went
away while it was meant to run. An index the registry no longer keeps
is refused with the oldest one it has. -topic filters (repeat it):
service, desired, compute, node, instance, launched, autoscale, rollout,
each optionally :<key> ("instance:hello" for one service's instances).
With -json each line is the event's JSON (id, index, time, topic, type,
key, object).
Examples:
    registry-cli events -follow
    registry-cli events -since 12000 -topic instance:hello -topic node
`

// topicsFlag collects -topic values.
type topicsFlag []string

func (t *topicsFlag) String() string { return strings.Join(*t, ",") }

func (t *topicsFlag) Set(v string) error {
	if err := registry.ValidateTopic(v); err != nil {
		return err
	}
	*t = append(*t, v)
	return nil
}

func eventsCommand() *command {
	var (
		follow bool
		since  int64
		topics topicsFlag
	)
	return &command{
		name: "events", args: "[-follow] [-since <index>] [-topic <topic>]... [-json]",
		summary: "Print the registry's events after an index (-since), and those to come (-follow)",
		help:    eventsHelp,
		flags: func(fs *flag.FlagSet, s *session) {
			fs.BoolVar(&follow, "follow", false, "wait for the changes to come, until interrupted")
			fs.Int64Var(&since, "since", 0, "print the events after this index (0: none before now, for -follow)")
			fs.Var(&topics, "topic", "print only this topic's events (repeatable): service, desired, compute, node, instance, launched, autoscale, rollout, optionally :<key>")
			fs.BoolVar(&s.json, "json", s.json, "print each event as a line of JSON")
		},
		run: func(ctx context.Context, s *session, args []string) error {
			if err := wantArgs(args, 0, "no arguments, only options"); err != nil {
				return err
			}
			if since < 0 {
				return usagef("-since must be an index (0 or more), not %d", since)
			}
			if since == 0 && !follow {
				return usagef("nothing to print: give -since <index> for past events, -follow for those to come, or both")
			}
			c, err := s.connect(ctx)
			if err != nil {
				return err
			}
			// A stream is not bounded by -timeout (each attempt to reach a
			// registry is), only a stream that does not follow is.
			sctx := ctx
			if follow {
				sctx = s.parent
			}
			req := registry.EventsRequest{Index: since, Topics: topics, Follow: follow}
			err = c.Events(sctx, req, func(e registry.Event) error {
				if e.Type == registry.EventHeartbeat {
					return nil
				}
				if s.json {
					b, err := json.Marshal(e)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(s.env.Stdout, "%s\n", b)
					return err
				}
				_, err := fmt.Fprintln(s.env.Stdout, eventLine(e))
				return err
			})
			if follow && errors.Is(err, context.Canceled) && s.parent.Err() != nil {
				return nil // interrupted: what -follow waits for
			}
			if err != nil {
				return fmt.Errorf("read events: %w", err)
			}
			return nil
		},
	}
}

// eventLine is an event as one line: index, topic, type, key, and what
// it says in a word (an instance's state, a node's name, a desired
// count, a compute's connector).
func eventLine(e registry.Event) string {
	line := strconv.FormatInt(e.Index, 10) + " " + e.Topic + " " + e.Type + " " + e.Key
	if w := eventWord(e); w != "" {
		line += " " + w
	}
	return line
}

func eventWord(e registry.Event) string {
	// Field names match either case: the records' are State, Name (an
	// instance, a node) or state, number, connector.
	var o struct {
		State     string
		Name      string
		Number    *int
		Connector string
	}
	if json.Unmarshal(e.Object, &o) != nil {
		return ""
	}
	switch e.Topic {
	case registry.TopicInstance, registry.TopicLaunched:
		return o.State
	case registry.TopicNode:
		return o.Name
	case registry.TopicDesired:
		if o.Number != nil {
			return strconv.Itoa(*o.Number)
		}
	case registry.TopicCompute:
		return o.Connector
	}
	return ""
}
