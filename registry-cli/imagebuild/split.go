package imagebuild

import (
	"fmt"
	"strings"
)

// SplitCommand splits a command line into argv the way a POSIX shell splits
// words, without running a shell: no variable expansion, globbing,
// redirection or operators ("$SERVICE_PORT" stays as written; the proxy
// that runs the command may expand it).
//
//   - Words are separated by ASCII whitespace (space, tab, newline, CR, VT, FF).
//   - 'single quotes' keep everything up to the next single quote literally.
//   - "double quotes" keep everything literally, except that a backslash
//     escapes ", \, $ and ` and removes a following newline; before any
//     other character it is kept.
//   - Outside quotes a backslash makes the next character literal, and a
//     backslash-newline pair is removed.
//   - ” and "" make an empty argument.
//
// Unbalanced quotes, a trailing backslash and NUL bytes are errors wrapping
// ErrCommandSyntax. An empty or blank command gives an empty argv.
func SplitCommand(cmd string) ([]string, error) {
	const (
		plain = iota
		single
		double
	)
	var (
		args   []string
		word   strings.Builder
		inWord bool // word holds an argument, possibly empty
		state  = plain
		opened int // byte offset of the open quote
	)
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		if c == 0 {
			return nil, fmt.Errorf("%w: NUL byte at offset %d", ErrCommandSyntax, i)
		}
		switch state {
		case plain:
			switch {
			case isSpace(c):
				if inWord {
					args = append(args, word.String())
					word.Reset()
					inWord = false
				}
			case c == '\'' || c == '"':
				state, opened, inWord = single, i, true
				if c == '"' {
					state = double
				}
			case c == '\\':
				if i+1 == len(cmd) {
					return nil, fmt.Errorf("%w: trailing backslash escapes nothing", ErrCommandSyntax)
				}
				i++
				if cmd[i] == '\n' {
					continue // line continuation
				}
				if cmd[i] == 0 {
					return nil, fmt.Errorf("%w: NUL byte at offset %d", ErrCommandSyntax, i)
				}
				word.WriteByte(cmd[i])
				inWord = true
			default:
				word.WriteByte(c)
				inWord = true
			}
		case single:
			if c == '\'' {
				state = plain
			} else {
				word.WriteByte(c)
			}
		case double:
			switch c {
			case '"':
				state = plain
			case '\\':
				if i+1 < len(cmd) {
					switch cmd[i+1] {
					case '"', '\\', '$', '`':
						i++
						word.WriteByte(cmd[i])
						continue
					case '\n':
						i++
						continue
					}
				}
				word.WriteByte(c)
			default:
				word.WriteByte(c)
			}
		}
	}
	switch state {
	case single:
		return nil, fmt.Errorf("%w: the single quote at offset %d is never closed", ErrCommandSyntax, opened)
	case double:
		return nil, fmt.Errorf("%w: the double quote at offset %d is never closed", ErrCommandSyntax, opened)
	}
	if inWord {
		args = append(args, word.String())
	}
	return args, nil
}

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}
