package imagebuild

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   \t\n ", nil},
		{"./server", []string{"./server"}},
		{"  ./server   --port  8080 ", []string{"./server", "--port", "8080"}},
		{"a\tb\nc\rd\ve\ff", []string{"a", "b", "c", "d", "e", "f"}},
		{`echo 'hello world'`, []string{"echo", "hello world"}},
		{`echo "hello world"`, []string{"echo", "hello world"}},
		{`echo '' ""`, []string{"echo", "", ""}},
		{`a''b`, []string{"ab"}},
		{`'a'"b"c`, []string{"abc"}},
		{`'it''s'`, []string{"its"}},
		{`'don'\''t'`, []string{"don't"}},
		{`'a "b" \c'`, []string{`a "b" \c`}},
		{`"a 'b' c"`, []string{"a 'b' c"}},
		{`"a\"b"`, []string{`a"b`}},
		{`"a\\b"`, []string{`a\b`}},
		{`"\$HOME \` + "`x`" + `"`, []string{"$HOME `x`"}},
		{`"a\nb"`, []string{`a\nb`}},
		{"\"a\\\nb\"", []string{"ab"}},
		{`a\ b`, []string{"a b"}},
		{`a\\b`, []string{`a\b`}},
		{`\'a\"`, []string{`'a"`}},
		{"a\\\nb", []string{"ab"}},
		{"a \\\n b", []string{"a", "b"}},
		{`--port $SERVICE_PORT ${PROXY_PORT}`, []string{"--port", "$SERVICE_PORT", "${PROXY_PORT}"}},
		{`sh -c "echo $1 | wc -l; exit 1" && rm *`, []string{"sh", "-c", "echo $1 | wc -l; exit 1", "&&", "rm", "*"}},
		{"héllo 'wörld ✓'", []string{"héllo", "wörld ✓"}},
		{"a\u00a0b", []string{"a\u00a0b"}}, // only ASCII whitespace separates
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.in)
		if err != nil {
			t.Errorf("SplitCommand(%q): %v", tt.in, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("SplitCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSplitCommandErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`echo 'hello`, "bad command: the single quote at offset 5 is never closed"},
		{`echo "hello`, "bad command: the double quote at offset 5 is never closed"},
		{`"a\"`, "bad command: the double quote at offset 0 is never closed"},
		{`'a\'`, ""}, // backslash is literal in single quotes: balanced
		{`a \`, "bad command: trailing backslash escapes nothing"},
		{"a\x00b", "bad command: NUL byte at offset 1"},
		{"'a\x00'", "bad command: NUL byte at offset 2"},
		{"a\\\x00", "bad command: NUL byte at offset 2"},
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.in)
		if tt.want == "" {
			if err != nil {
				t.Errorf("SplitCommand(%q): %v", tt.in, err)
			}
			continue
		}
		if !errors.Is(err, ErrCommandSyntax) || err.Error() != tt.want {
			t.Errorf("SplitCommand(%q) = %q, %v; want error %q", tt.in, got, err, tt.want)
		}
	}
}

// quote renders arg so that SplitCommand gives it back as one argument.
func quote(arg string) string {
	return "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
}

// FuzzSplitCommand checks that SplitCommand never panics, that what it
// returns can be quoted back into a command that splits the same way, and
// that a command without quotes or backslashes splits like strings.Fields
// on ASCII whitespace. The corpus is in testdata/fuzz/FuzzSplitCommand.
func FuzzSplitCommand(f *testing.F) {
	f.Fuzz(func(t *testing.T, cmd string) {
		argv, err := SplitCommand(cmd)
		if err != nil {
			if !errors.Is(err, ErrCommandSyntax) {
				t.Fatalf("SplitCommand(%q): error %v does not wrap ErrCommandSyntax", cmd, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if strings.IndexByte(cmd, 0) >= 0 {
			t.Fatalf("SplitCommand(%q) accepted a NUL byte: %q", cmd, argv)
		}
		quoted := make([]string, len(argv))
		for i, a := range argv {
			if strings.IndexByte(a, 0) >= 0 {
				t.Fatalf("argument %q holds a NUL byte", a)
			}
			quoted[i] = quote(a)
		}
		again, err := SplitCommand(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(again, argv) {
			t.Fatalf("round trip of %q: %q, %v; want %q", cmd, again, err, argv)
		}
		if !strings.ContainsAny(cmd, `'"\`) {
			fields := strings.FieldsFunc(cmd, func(r rune) bool { return r < utf8.RuneSelf && isSpace(byte(r)) })
			if !slices.Equal(argv, fields) {
				t.Fatalf("SplitCommand(%q) = %q, want the fields %q", cmd, argv, fields)
			}
		}
	})
}
