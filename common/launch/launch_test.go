package launch

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// sh starts a shell script as a process whose files are in a temporary
// directory.
func sh(t *testing.T, script string) *Proc {
	t.Helper()
	dir := t.TempDir()
	p, err := Start(Cmd{Name: "script", Path: "/bin/sh", Args: []string{"-c", script},
		OutFile: filepath.Join(dir, "script.out"), ErrFile: filepath.Join(dir, "script.log")})
	if err != nil {
		t.Skipf("no shell: %v", err)
	}
	t.Cleanup(p.KillGroup)
	return p
}

func TestWaitOutputThenStop(t *testing.T) {
	p := sh(t, `echo one line >&2; echo another >&2; echo "svc ready"; trap 'exit 3' TERM; while :; do sleep 0.01; done`)
	if err := p.WaitOutput(t.Context(), "svc ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := p.Tail(1); got != "another" {
		t.Errorf("Tail(1) = %q", got)
	}
	if got := p.Tail(5); got != "one line / another" {
		t.Errorf("Tail(5) = %q", got)
	}
	if killed := p.Stop(10 * time.Second); killed || p.ExitCode() != 3 {
		t.Fatalf("Stop: killed %v, exit code %d; want a clean exit 3", killed, p.ExitCode())
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	p := sh(t, `trap '' TERM; echo up; while :; do sleep 0.01; done`)
	if err := p.WaitOutput(t.Context(), "up", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !p.Stop(200 * time.Millisecond) {
		t.Fatal("Stop did not have to kill a process that ignores SIGTERM")
	}
	if !p.Exited() || p.ExitCode() != -1 {
		t.Fatalf("after the kill: exited %v, exit code %d", p.Exited(), p.ExitCode())
	}
}

func TestWaitOutputSaysWhyItGaveUp(t *testing.T) {
	p := sh(t, `echo "no PSK given" >&2; exit 1`)
	err := p.WaitOutput(t.Context(), "ready", 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited (exit status 1)") || !strings.Contains(err.Error(), "no PSK given") {
		t.Fatalf("WaitOutput on a process that exits: %v", err)
	}
	if err := sh(t, `exit 0`).WaitOutput(t.Context(), "ready", 10*time.Second); err == nil || !strings.Contains(err.Error(), "exited (exit status 0)") {
		t.Fatalf("WaitOutput on a process that exits cleanly: %v", err)
	}
	q := sh(t, `sleep 10`)
	if err := q.WaitOutput(t.Context(), "ready", 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not print") {
		t.Fatalf("WaitOutput past its timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := q.WaitOutput(ctx, "ready", time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitOutput with an ended context: %v", err)
	}
}

func TestReadyReadsTheAddressFile(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "addr")
	p := sh(t, `echo ready; sleep 0.1; printf '/ip4/127.0.0.1/tcp/1/p2p/x\n/ip6/::1/tcp/1/p2p/x\n' > `+addr+`; sleep 10`)
	got, err := p.Ready(t.Context(), "ready", 10*time.Second, addr)
	if err != nil || got != "/ip4/127.0.0.1/tcp/1/p2p/x" {
		t.Fatalf("Ready: %q, %v", got, err)
	}
	if _, err := FirstLine(t.Context(), filepath.Join(t.TempDir(), "never"), 50*time.Millisecond); err == nil {
		t.Fatal("FirstLine of a file never written")
	}
}

// TestEnvIsWhatIsGiven: Env is the child's whole environment; nil
// passes on this process's.
func TestEnvIsWhatIsGiven(t *testing.T) {
	t.Setenv("LAUNCH_TEST_INHERITED", "ours")
	dir := t.TempDir()
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "[ours][]\n"},
		{[]string{"LAUNCH_TEST_GIVEN=given"}, "[][given]\n"},
	} {
		p, err := Start(Cmd{Name: "env", Path: "/bin/sh", Args: []string{"-c", `echo "[$LAUNCH_TEST_INHERITED][$LAUNCH_TEST_GIVEN]"`},
			Env: tc.env, OutFile: filepath.Join(dir, "env.out"), ErrFile: filepath.Join(dir, "env.log")})
		if err != nil {
			t.Skipf("no shell: %v", err)
		}
		<-p.Done()
		if out := p.Stdout(); out != tc.want {
			t.Errorf("Env %q: the child saw %q; want %q", tc.env, out, tc.want)
		}
	}
}

func TestArgs(t *testing.T) {
	reg := Registry{
		Node:    Node{KeyFile: "/k", AddrFile: "/a", LogLevel: "debug"},
		DataDir: "/d", ClientPort: 1, PeerPort: 2, APIListen: "127.0.0.1:3", UnsafeNoFsync: true, Extra: []string{"-voters", "3"},
	}
	join := Registry{Node: Node{PSK: "pass", Port: 7, Bootstrap: "/boot"}, DataDir: "/d"}
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"first registry", reg.Args(), []string{"-keyfile", "/k", "-listen", "/ip4/127.0.0.1/tcp/0", "-addr-file", "/a",
			"-prom-listen-addr", "", "-log-level", "debug", "-new-etcd-cluster", "-data-dir", "/d",
			"-etcd-client-port", "1", "-etcd-peer-port", "2", "-api-listen", "127.0.0.1:3", "-unsafe-no-fsync", "-voters", "3"}},
		{"joining registry", join.Args()[:9], []string{"-ephemeral", "-psk", "pass", "-listen", "/ip4/127.0.0.1/tcp/7",
			"-bootstrap", "/boot", "-prom-listen-addr", ""}},
		{"allocator", Allocator{
			Node: Node{KeyFile: "/k", IP: "127.0.0.2", Metrics: "127.0.0.1:9"}, Name: "site-a",
			DataDir: "/d", Runtime: "process", CPUs: "0.5", MemoryMiB: 256, Labels: "site=a", Proxy: "/bin/proxy",
			IdleTimeout: 10 * time.Minute, LeaseTTL: 3 * time.Second,
		}.Args(), []string{"-keyfile", "/k", "-listen", "/ip4/127.0.0.2/tcp/0", "-prom-listen-addr", "127.0.0.1:9",
			"-name", "site-a", "-data-dir", "/d", "-runtime", "process", "-cpus", "0.5", "-memory", "256", "-labels", "site=a",
			"-proxy", "/bin/proxy", "-idle-timeout", "10m0s", "-lease-ttl", "3s"}},
		{"client proxy", ClientProxy{HTTPPort: 8080, Extra: []string{"-attempts", "1"}}.Args(), []string{
			"-ephemeral", "-listen", "/ip4/127.0.0.1/tcp/0", "-prom-listen-addr", "", "-attempts", "1", "8080"}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
	// Allocators without a name get one each: the host name, their
	// default, is the same for every allocator of a local network.
	first, second := Allocator{}.Args(), Allocator{}.Args()
	name := func(args []string) string { return args[slices.Index(args, "-name")+1] }
	if name(first) == name(second) || !strings.HasPrefix(name(first), "alloc-") {
		t.Errorf("default allocator names %q and %q; want two of their own", name(first), name(second))
	}
	if slices.Contains(join.Args(), "-new-etcd-cluster") {
		t.Error("a registry given a bootstrap peer starts a new cluster")
	}
	if join.ClientPort == 0 || join.PeerPort == 0 || join.ClientPort == join.PeerPort {
		t.Errorf("etcd ports picked: %d and %d", join.ClientPort, join.PeerPort)
	}
	if !strings.HasPrefix(join.APIListen, "127.0.0.1:") || join.APIURL() != "http://"+join.APIListen {
		t.Errorf("API address picked: %q (%s)", join.APIListen, join.APIURL())
	}
}

// TestDoesNotImportTesting: the demo and the bench are built with this
// package, and proctest builds on it, not the other way round.
func TestDoesNotImportTesting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	if slices.Contains(strings.Fields(string(out)), "testing") {
		t.Fatal("package launch depends on package testing")
	}
}
