package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

func TestCallbacksTable(t *testing.T) {
	cbs := []registry.Callback{
		{ID: "cb_00000000000000b2", URL: "https://ci.example.com/hook", Service: "hello", Delivered: 12, Pending: 3,
			LastSuccess: now.Add(-time.Minute), LastError: "event 40-0: answered 500 Internal Server Error:\nboom", FailingSince: now.Add(-30 * time.Second)},
		{ID: "cb_00000000000000a1", URL: "http://127.0.0.1:9000/", Instance: "0b6e3a4c-6a3f-4c1e-9d1e-2f7d1d9c0a11", Delivered: 3, LastSuccess: now.Add(-5 * time.Second)},
		{ID: "cb_00000000000000c3", URL: "http://10.0.0.9/x", Disabled: true, DisabledReason: "failing since yesterday", Skipped: "events after index 4 up to index 90 were compacted away"},
	}
	var b bytes.Buffer
	if err := writeCallbacks(&b, cbs, now); err != nil {
		t.Fatal(err)
	}
	want := `ID                   EVENTS OF                                      URL                          DELIVERED  PENDING  LAST SUCCESS  STATE
cb_00000000000000a1  instance 0b6e3a4c-6a3f-4c1e-9d1e-2f7d1d9c0a11  http://127.0.0.1:9000/       3          0        5s ago        ok
cb_00000000000000b2  service hello                                  https://ci.example.com/hook  12         3        1m0s ago      failing for 30s: event 40-0: answered 500 Internal Server Error: boom
cb_00000000000000c3  everything                                     http://10.0.0.9/x            0          0        -             disabled: failing since yesterday; events after index 4 up to index 90 were compacted away
`
	if got := b.String(); got != want {
		t.Errorf("callbacks table:\n%s\nwant:\n%s", got, want)
	}
	b.Reset()
	if err := writeCallbacks(&b, nil, now); err != nil || b.String() != "no callbacks\n" {
		t.Errorf("no callbacks: %q, %v", b.String(), err)
	}
}

// Mistakes in how the callback commands are called are caught before
// the CLI joins the network (no PSK is given here).
func TestCallbackCommandsRefuseBadInputBeforeConnecting(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"callbacks with an argument", []string{"callbacks", "x"}, ExitUsage, "want 0 argument(s)"},
		{"callback alone", []string{"callback"}, ExitUsage, "want a callback command: add <url>"},
		{"callback frobnicate", []string{"callback", "frobnicate"}, ExitUsage, `unknown callback command "frobnicate"`},
		{"add without a url", []string{"callback", "add"}, ExitUsage, "callback add wants <url> (got 0"},
		{"add two urls", []string{"callback", "add", "http://a/", "http://b/"}, ExitUsage, "callback add wants <url> (got 2"},
		{"add ftp", []string{"callback", "add", "ftp://h/x"}, ExitFailure, "http:// or https://"},
		{"add both", []string{"callback", "add", "http://h/", "-service", "svc", "-instance", "0b6e3a4c-6a3f-4c1e-9d1e-2f7d1d9c0a11"}, ExitFailure, "give one of them"},
		{"add a bad uuid", []string{"callback", "add", "http://h/", "-instance", "x"}, ExitFailure, "not a UUID"},
		{"add a bad service", []string{"callback", "add", "http://h/", "-service", "Hello World"}, ExitFailure, "service name"},
		{"add a bad secret", []string{"callback", "add", "http://h/", "-secret", "hunter2"}, ExitFailure, "whsec_"},
		{"delete without an id", []string{"callback", "delete"}, ExitUsage, "callback delete wants <id> (got 0"},
		{"delete a bad id", []string{"callback", "delete", "42"}, ExitFailure, "callback id"},
		{"delete with -service", []string{"callback", "delete", "cb_0123456789abcdef", "-service", "svc"}, ExitUsage, "takes no -service"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), c.args, Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
			last := lastLine(stderr.String())
			if code != c.code || !strings.HasPrefix(last, "registry-cli: ") || !strings.Contains(last, c.msg) {
				t.Fatalf("exit %d, want %d; stderr %q: want its last line to name %q", code, c.code, stderr.String(), c.msg)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}
