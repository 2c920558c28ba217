package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

const (
	uuidA = "0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"
	uuidB = "1b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f"
)

func TestLaunchedTable(t *testing.T) {
	ls := []registry.LaunchedInstance{
		{UUID: uuidA, Service: "hello", Node: "n1", NodeID: peerID, State: "running", Want: "running",
			Started: now.Add(-90 * time.Second), Restarts: 2},
		{UUID: uuidB, Service: "web", State: "pending", Want: "running", Message: "cannot start yet:\nn1: no capacity"},
		{UUID: "2b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f", Service: "web", NodeID: peerID, State: "lost", Want: "running",
			Message: "its node n2 left (its lease ran out)"},
	}
	var b bytes.Buffer
	if err := writeLaunched(&b, ls, now); err != nil {
		t.Fatal(err)
	}
	want := `UUID                                  SERVICE  NODE             STATE    WANT     AGE    RESTARTS  MESSAGE
0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f  hello    n1               running  running  1m30s  2         -
1b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f  web      -                pending  running  -      0         cannot start yet: n1: no capacity
2b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f  web      12D3KooW…6JsBn1  lost     running  -      0         its node n2 left (its lease ran out)
`
	if b.String() != want {
		t.Errorf("launched table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := writeLaunched(&b, nil, now); err != nil || b.String() != "no launched instances\n" {
		t.Errorf("no instances: %q, %v", b.String(), err)
	}
}

func TestInstanceDetails(t *testing.T) {
	started := now.Add(-time.Minute)
	li := registry.LaunchedInstance{
		UUID: uuidA, Service: "hello", Compute: "site-a", State: "running", Want: "running", Node: "n1", NodeID: peerID,
		Addrs:   registry.InstanceAddrs{PeerID: "12D3KooWProxy", Multiaddrs: []string{"/ip4/10.0.0.5/tcp/4001", "/ip4/127.0.0.1/tcp/4001"}},
		Version: 42, Started: started, Restarts: 1, Callback: "cb_0123456789abcdef",
		Created: now.Add(-2 * time.Minute), SetBy: "http 127.0.0.1",
	}
	var b bytes.Buffer
	if err := writeInstance(&b, li, now); err != nil {
		t.Fatal(err)
	}
	want := `uuid:      0b7d3c1e-5f0a-4c2b-9e8d-7a6b5c4d3e2f
service:   hello
compute:   site-a
state:     running
want:      running
node:      n1 (` + peerID + `)
proxy:     12D3KooWProxy
addrs:     /ip4/10.0.0.5/tcp/4001 /ip4/127.0.0.1/tcp/4001
version:   42
started:   ` + started.Local().Format(time.RFC3339) + ` (1m0s ago)
restarts:  1
message:   -
callback:  cb_0123456789abcdef
created:   ` + now.Add(-2*time.Minute).Local().Format(time.RFC3339) + ` (2m0s ago) by http 127.0.0.1
`
	if b.String() != want {
		t.Errorf("instance:\n%s\nwant:\n%s", b.String(), want)
	}
	// Pending: nothing placed yet.
	b.Reset()
	if err := writeInstance(&b, registry.LaunchedInstance{UUID: uuidB, Service: "web", State: "pending"}, now); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"compute:   physarum", "node:      -", "addrs:     -", "started:   -", "created:   -"} {
		if !strings.Contains(b.String(), line+"\n") {
			t.Errorf("pending instance: no line %q in\n%s", line, b.String())
		}
	}
}

func TestLaunchAnswer(t *testing.T) {
	var b bytes.Buffer
	li := registry.LaunchedInstance{UUID: uuidA, Service: "hello", Compute: "physarum", State: "pending",
		Callback: "cb_0123456789abcdef", CallbackSecret: "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"}
	if err := writeLaunch(&b, li); err != nil {
		t.Fatal(err)
	}
	want := uuidA + ": pending (service hello, compute physarum)\n" +
		"callback cb_0123456789abcdef, secret whsec_c2VjcmV0c2VjcmV0c2VjcmV0 (shown this once: keep it to check signatures)\n"
	if b.String() != want {
		t.Errorf("launch:\n%s\nwant:\n%s", b.String(), want)
	}
	li = registry.LaunchedInstance{UUID: uuidA, Service: "hello", State: "stopped", Node: "n1", Message: "cannot start on n1:\tno capacity"}
	if got := launchedLine(li); got != uuidA+": stopped (service hello, compute physarum, node n1): cannot start on n1: no capacity" {
		t.Errorf("launchedLine: %q", got)
	}
}

// Mistakes in how the lifecycle commands are called are caught before
// the CLI joins the network (no PSK is given: connecting would fail).
func TestLifecycleCommandsRefuseBadInputBeforeConnecting(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"launch without a service", []string{"launch"}, ExitUsage, "want 1 argument(s): <service-name> (got 0)"},
		{"launch two", []string{"launch", "a", "b"}, ExitUsage, "want 1 argument(s)"},
		{"launch an ill-formed service", []string{"launch", "Hello World"}, ExitFailure, "service name"},
		{"launch under an ill-formed UUID", []string{"launch", "hello", "-uuid", "1234"}, ExitFailure, `invalid uuid: "1234" is not a UUID`},
		{"launch with an ftp callback", []string{"launch", "hello", "-callback", "ftp://x/hook"}, ExitFailure, "invalid callback"},
		{"launch on an ill-formed compute", []string{"launch", "hello", "-compute", "Site A"}, ExitFailure, "compute name"},
		{"launched of two", []string{"launched", "a", "b"}, ExitUsage, "at most one argument"},
		{"launched of an ill-formed service", []string{"launched", "A B"}, ExitFailure, "service name"},
		{"instance without a UUID", []string{"instance"}, ExitUsage, "want 1 argument(s): <uuid>"},
		{"instance of an ill-formed UUID", []string{"instance", "nope"}, ExitFailure, "invalid uuid"},
		{"act without an action", []string{"act", uuidA}, ExitUsage, "want 2 argument(s): <uuid> start|stop|reboot"},
		{"act explode", []string{"act", uuidA, "explode"}, ExitUsage, `unknown action "explode": want start, stop, reboot`},
		{"act on an ill-formed UUID", []string{"act", "nope", "stop"}, ExitFailure, "invalid uuid"},
		{"forget without a UUID", []string{"forget"}, ExitUsage, "want 1 argument(s): <uuid>"},
		{"forget an ill-formed UUID", []string{"forget", "nope"}, ExitFailure, "invalid uuid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), c.args, Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
			last := lastLine(stderr.String())
			if code != c.code || !strings.HasPrefix(last, "registry-cli: ") || !strings.Contains(last, c.msg) {
				t.Fatalf("exit %d, want %d; stderr %q: want its last line to name %q", code, c.code, stderr.String(), c.msg)
			}
			if c.code == ExitFailure && strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("not one line: %q", stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q", stdout.String())
			}
		})
	}
}
