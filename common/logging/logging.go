// Package logging builds the slog logger every binary uses from -log-level
// and -log-format.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
)

// Formats accepted by -log-format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// ParseLevel maps debug, info, warn or error (any case) to a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// New returns a logger writing to w at level in format, with the binary's
// name on every line.
func New(w io.Writer, binary, level, format string) (*slog.Logger, error) {
	l, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: l}
	var h slog.Handler
	switch strings.ToLower(format) {
	case FormatText, "":
		h = slog.NewTextHandler(w, opts)
	case FormatJSON:
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
	return slog.New(h).With("bin", binary), nil
}

// Discard is a logger that drops everything (tests, libraries by default).
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// textKV matches one key=value of a slog text line; a quoted value may
// hold spaces.
var textKV = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// ParseText reads the key=value pairs of one line that slog's text
// handler wrote (quoted values unquoted), for tools that read the
// daemons' logs: the bench, the demo.
func ParseText(line string) map[string]string {
	kv := map[string]string{}
	for _, m := range textKV.FindAllStringSubmatch(line, -1) {
		v := m[2]
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		kv[m[1]] = v
	}
	return kv
}
