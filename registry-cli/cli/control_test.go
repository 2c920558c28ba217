package cli

import (
	"bytes"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// now is the fixed time the tables are rendered at.
var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const peerID = "12D3KooWLVwJAVcT5MhQwKbx8yibxxKZo1YZwqTvRuAG7W6JsBn1"

func TestStatusTable(t *testing.T) {
	backoff := now.Add(25 * time.Second)
	st := registry.ServiceStatus{
		Service: "svc", RunningResources: 3, Desired: 5, Starting: 1, Failed: 1, OnDemand: 1,
		Computes: map[string]registry.ComputeStatus{
			"site-a": {Desired: 4, Running: 3, Starting: 1, SetBy: "peer " + peerID, SetAt: now.Add(-2 * time.Minute)},
			"edge": {Desired: 1, Failed: 1, SetBy: "http 127.0.0.1", SetAt: now.Add(-time.Hour),
				BackoffUntil: backoff, LastFailure: "exit status 1:\n\tno such file", Message: "connector does not answer"},
			"physarum": {Running: 0},
		},
		Instances: []registry.InstanceStatus{
			{ID: "svc-3", Node: peerID, NodeName: "n2", Compute: "site-a", State: "starting", Started: now.Add(-5 * time.Second)},
			{ID: "svc-1", Node: peerID, NodeName: "n1", Compute: "site-a", State: "running", Started: now.Add(-90 * time.Second), Restarts: 2},
			{ID: "svc-od", Node: peerID, State: "running", OnDemand: true, Started: now.Add(-10 * time.Second)},
			{ID: "svc-2", Node: peerID, NodeName: "n1", Compute: "site-a", State: "running", Started: now.Add(-60 * time.Second), Message: "restarted after\texit 2"},
			{ID: "svc-x", NodeName: "n3", Compute: "edge", State: "failed", Message: "exit status 1"},
			{ID: "svc-4", Node: peerID, NodeName: peerID, Compute: "site-b", State: "running", Started: now.Add(-time.Second)},
		},
	}
	var b bytes.Buffer
	if err := writeStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	want := `svc: 3/5 running (desired 5), 1 starting, 1 failed, 1 on demand

COMPUTE   DESIRED  RUNNING  STARTING  FAILED  SET BY                CHANGED     NOTE
edge      1        0        0         1       http 127.0.0.1        1h0m0s ago  connector does not answer; backing off until ` + backoff.Local().Format(time.TimeOnly) + ` (in 25s); last failure: exit status 1: no such file
physarum  0        0        0         0       -                     -           -
site-a    4        3        1         0       peer 12D3KooW…6JsBn1  2m0s ago    -

ID      NODE             COMPUTE  STATE     ON DEMAND  AGE    RESTARTS  MESSAGE
svc-od  12D3KooW…6JsBn1  -        running   true       10s    0         -
svc-x   n3               edge     failed    false      -      0         exit status 1
svc-1   n1               site-a   running   false      1m30s  2         -
svc-2   n1               site-a   running   false      1m0s   0         restarted after exit 2
svc-3   n2               site-a   starting  false      5s     0         -
svc-4   12D3KooW…6JsBn1  site-b   running   false      1s     0         -
`
	if got := b.String(); got != want {
		t.Errorf("status table:\n%s\nwant:\n%s", got, want)
	}
}

// A service with nothing desired and no instance still reads as a
// status, not as an empty table.
func TestStatusTableOfAnIdleService(t *testing.T) {
	var b bytes.Buffer
	if err := writeStatus(&b, registry.ServiceStatus{Service: "idle"}, now); err != nil {
		t.Fatal(err)
	}
	want := "idle: 0/0 running (desired 0), 0 starting, 0 failed, 0 on demand\n\nno instances\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestStatusAllLines(t *testing.T) {
	all := []registry.ServiceStatus{
		{Service: "web", RunningResources: 2, Desired: 2, Computes: map[string]registry.ComputeStatus{"physarum": {Desired: 2, Running: 2}}},
		{Service: "crashy", Desired: 1, Failed: 1, Computes: map[string]registry.ComputeStatus{
			"physarum": {Desired: 1, Failed: 1, LastFailure: "exit status 2", BackoffUntil: now.Add(-time.Second)}, // back-off over: not shown
		}},
		{Service: "api", OnDemand: 1},
		{Service: "flaky", Desired: 2, Failed: 2, Computes: map[string]registry.ComputeStatus{
			// The reconciler's message says it backs off: said once.
			"physarum": {Desired: 2, Failed: 2, BackoffUntil: now.Add(time.Minute), Message: "backing off until 2025-03-01T12:01:00Z after 3 failed starts"},
		}},
	}
	var b bytes.Buffer
	if err := writeStatusAll(&b, all, now); err != nil {
		t.Fatal(err)
	}
	want := `api: 0/0 running (desired 0), 0 starting, 0 failed, 1 on demand
crashy: 0/1 running (desired 1), 0 starting, 1 failed, 0 on demand; physarum: last failure: exit status 2
flaky: 0/2 running (desired 2), 0 starting, 2 failed, 0 on demand; physarum: backing off until 2025-03-01T12:01:00Z after 3 failed starts
web: 2/2 running (desired 2), 0 starting, 0 failed, 0 on demand
`
	if b.String() != want {
		t.Errorf("status of all:\n%s\nwant:\n%s", b.String(), want)
	}
	if all[0].Service != "web" {
		t.Error("writeStatusAll reordered its argument")
	}
	b.Reset()
	if err := writeStatusAll(&b, nil, now); err != nil || b.String() != "no services\n" {
		t.Errorf("no services: %q, %v", b.String(), err)
	}
}

func TestComputesTable(t *testing.T) {
	cs := []registry.ComputeInfo{
		{Compute: registry.Compute{Name: "site-a", Connector: "physarum:labels?site=a"}, Kind: registry.KindLabels, Nodes: []string{"n2", "n1"}},
		// An allocator without a -name is listed by its peer ID.
		{Compute: registry.Compute{Name: "site-b", Connector: "physarum:labels?site=b"}, Kind: registry.KindLabels, Nodes: []string{peerID}},
		{Compute: registry.Compute{Name: "physarum", Connector: "physarum"}, Kind: registry.KindNetwork, Builtin: true,
			Nodes: []string{"n7", "n6", "n5", "n4", "n3", "n2", "n1"}},
		{Compute: registry.Compute{Name: "n1", Connector: registry.NodeConnector("n1")}, Kind: registry.KindNode, Builtin: true, Nodes: []string{"n1"}},
		{Compute: registry.Compute{Name: "edge", Connector: "http://127.0.0.1:7051"}, Kind: registry.KindConnector},
	}
	var b bytes.Buffer
	if err := writeComputes(&b, cs); err != nil {
		t.Fatal(err)
	}
	want := `NAME      KIND       CONNECTOR               NODES                      BUILTIN
edge      connector  http://127.0.0.1:7051   -                          no
n1        node       physarum:node?name=n1   n1                         yes
physarum  network    physarum                n1,n2,n3,n4,n5 and 2 more  yes
site-a    labels     physarum:labels?site=a  n1,n2                      no
site-b    labels     physarum:labels?site=b  12D3KooW…6JsBn1            no
`
	if b.String() != want {
		t.Errorf("computes table:\n%s\nwant:\n%s", b.String(), want)
	}
	if cs[0].Name != "site-a" || cs[0].Nodes[0] != "n2" {
		t.Error("writeComputes reordered its argument")
	}
}

func TestScaleLine(t *testing.T) {
	d := registry.Desired{Service: "svc", Compute: "site-a", Number: 4}
	for _, c := range []struct {
		d                registry.Desired
		service, compute string
		was              int
		want             string
	}{
		{d, "svc", "site-a", 2, "svc: desired 4 on site-a (was 2)"},
		{d, "svc", "site-a", -1, "svc: desired 4 on site-a"},
		{registry.Desired{Number: 0}, "svc", "", 3, "svc: desired 0 on physarum (was 3)"},
		{registry.Desired{Number: 1}, "svc", "edge", 0, "svc: desired 1 on edge (was 0)"},
	} {
		if got := scaleLine(c.d, c.service, c.compute, c.was); got != c.want {
			t.Errorf("scaleLine(%+v, %q, %q, %d) = %q, want %q", c.d, c.service, c.compute, c.was, got, c.want)
		}
	}
}

func TestParseCount(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		err  string
	}{
		{"0", 0, ""},
		{"4", 4, ""},
		{"007", 7, ""},
		{"", 0, "non-negative integer"},
		{"-1", 0, "non-negative integer"},
		{"+3", 0, "non-negative integer"},
		{"1.5", 0, "non-negative integer"},
		{"3x", 0, "non-negative integer"},
		{" 3", 0, "non-negative integer"},
		{"99999999999999999999", 0, "too large"},
	} {
		n, err := parseCount(c.in)
		switch {
		case c.err == "" && (err != nil || n != c.want):
			t.Errorf("parseCount(%q) = %d, %v; want %d", c.in, n, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("parseCount(%q) = %d, %v; want an error naming %q", c.in, n, err, c.err)
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	for _, c := range []struct {
		args    []string
		want    []string
		compute string
	}{
		{[]string{"svc", "4"}, []string{"svc", "4"}, ""},
		{[]string{"-compute", "a", "svc", "4"}, []string{"svc", "4"}, "a"},
		{[]string{"svc", "4", "-compute", "a"}, []string{"svc", "4"}, "a"},
		{[]string{"svc", "-compute=a", "4"}, []string{"svc", "4"}, "a"},
		{[]string{"svc", "-1"}, []string{"svc", "-1"}, ""},
		{[]string{"-compute", "-1", "svc"}, []string{"svc"}, "-1"},
		{[]string{"svc", "--", "-compute", "a"}, []string{"svc", "-compute", "a"}, ""},
		{[]string{"--", "--"}, []string{"--"}, ""},
		{nil, nil, ""},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		compute := fs.String("compute", "", "")
		got, err := parseInterleaved(fs, c.args)
		if err != nil || !slices.Equal(got, c.want) || *compute != c.compute {
			t.Errorf("parseInterleaved(%q) = %q, %v, -compute %q; want %q, -compute %q", c.args, got, err, *compute, c.want, c.compute)
		}
	}
}

// Mistakes in how the new commands are called are caught before the CLI
// joins the network: no PSK and no bootstrap peer is given here, so a
// command that got as far as connecting would fail with "no PSK".
func TestControlCommandsRefuseBadInputBeforeConnecting(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"scale without arguments", []string{"scale"}, ExitUsage, "want 2 argument(s): <service-name> <number> (got 0)"},
		{"scale without a number", []string{"scale", "svc"}, ExitUsage, "want 2 argument(s)"},
		{"scale with three", []string{"scale", "svc", "3", "4"}, ExitUsage, "want 2 argument(s)"},
		{"scale by a word", []string{"scale", "svc", "three"}, ExitUsage, `<number> must be a non-negative integer, not "three"`},
		{"scale to a negative", []string{"scale", "svc", "-1"}, ExitUsage, `not "-1"`},
		{"scale to a fraction", []string{"scale", "svc", "1.5"}, ExitUsage, "non-negative integer"},
		{"scale too far", []string{"scale", "svc", "99999999999999999999"}, ExitUsage, "too large"},
		{"scale with an unknown option", []string{"scale", "svc", "3", "-nope"}, ExitUsage, "-nope"},
		{"scale -compute without a value", []string{"scale", "svc", "3", "-compute"}, ExitUsage, "-compute"},
		{"scale an ill-formed service", []string{"scale", "Hello World", "3"}, ExitFailure, "service name"},
		{"scale on an ill-formed compute", []string{"scale", "svc", "3", "-compute", "Site A"}, ExitFailure, "compute name"},
		{"status of two", []string{"status", "a", "b"}, ExitUsage, "at most one argument"},
		{"computes with an argument", []string{"computes", "x"}, ExitUsage, "want 0 argument(s)"},
		{"compute alone", []string{"compute"}, ExitUsage, "want a compute command: add <name> <connector> | delete <name>"},
		{"compute frobnicate", []string{"compute", "frobnicate"}, ExitUsage, `unknown compute command "frobnicate"`},
		{"compute add without a connector", []string{"compute", "add", "site-a"}, ExitUsage, "compute add wants <name> <connector> (got 1"},
		{"compute delete without a name", []string{"compute", "delete"}, ExitUsage, "compute delete wants <name> (got 0"},
		{"compute add an ill-formed connector", []string{"compute", "add", "site-a", "ftp://x"}, ExitFailure, "connector"},
		{"compute add an ill-formed label selector", []string{"compute", "add", "site-a", "physarum:labels?"}, ExitFailure, "connector"},
		{"compute add an ill-formed name", []string{"compute", "add", "Site A", "physarum"}, ExitFailure, "compute name"},
		{"compute delete an ill-formed name", []string{"compute", "delete", "-x-"}, ExitUsage, "-x-"},
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
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
