// Package dockerd starts Docker daemons of a test's (or a demo's) own on
// this machine, each with its own image store, so that images can be seen
// to travel between Docker hosts without a second machine. It needs root
// and dockerd; Test skips with the reason where either is missing.
//
// A daemon runs with its own data root, exec root, pid file and socket, a
// bridge interface of its own (made with iproute2's ip), no iptables rules
// (instances use the host network), and an empty config file: the
// machine's daemon.json may set a data root, which dockerd refuses to
// take twice.
package dockerd

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// StartTimeout bounds how long Start waits for the daemon to answer.
const StartTimeout = 60 * time.Second

// Daemon is a running dockerd of our own.
type Daemon struct {
	// Dir holds its data, exec root, socket and log.
	Dir string
	// Host is its address for DOCKER_HOST or client.WithHost.
	Host string
	// Client talks to it.
	Client *client.Client

	cmd       *exec.Cmd
	done      chan error
	bridge    string // its default bridge, made for it
	closeOnce sync.Once
}

// Start starts a daemon under a new directory in parent ("" for /tmp:
// socket paths are limited to 107 bytes, so keep parent short).
func Start(ctx context.Context, parent string) (*Daemon, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("a Docker daemon of our own needs root")
	}
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, fmt.Errorf("no dockerd on PATH: %w", err)
	}
	if parent == "" {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "dkd")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(conf, []byte("{}\n"), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	br, err := addBridge()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sock := filepath.Join(dir, "sock")
	args := []string{
		"--config-file", conf, "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"), "-H", "unix://" + sock,
		"--bridge", br, "--iptables=false", "--ip6tables=false",
		"--storage-driver", storageDriver(),
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a test's Ctrl-C is for the test, and Close
	// stops the daemon and the containerd it started together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		delBridge(br)
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	d := &Daemon{Dir: dir, Host: "unix://" + sock, cmd: cmd, done: make(chan error, 1), bridge: br}
	go func() { d.done <- cmd.Wait() }()
	if err := d.waitReady(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// addBridge makes a bridge interface of its own for a daemon. Not
// --bridge none: a daemon started so deletes the interface named docker0
// of its network namespace, which here is the machine's daemon's bridge.
func addBridge() (string, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "dkbr" + hex.EncodeToString(b) // at most 15 characters, as Linux wants
	if out, err := exec.Command("ip", "link", "add", "name", name, "type", "bridge").CombinedOutput(); err != nil {
		return "", fmt.Errorf("make a bridge for a Docker daemon of our own (ip link add, from iproute2): %w: %s", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "link", "set", name, "up").CombinedOutput(); err != nil {
		delBridge(name)
		return "", fmt.Errorf("bring up the bridge %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return name, nil
}

// delBridge removes a bridge addBridge made.
func delBridge(name string) {
	_ = exec.Command("ip", "link", "del", name).Run()
}

// storageDriver picks fuse-overlayfs where it is installed (what this
// machine's own daemon uses), else vfs, which works anywhere (copies whole
// layers: fine for the small images of tests).
func storageDriver() string {
	if _, err := exec.LookPath("fuse-overlayfs"); err == nil {
		return "fuse-overlayfs"
	}
	return "vfs"
}

// waitReady polls the socket until the daemon answers, it exits, or
// StartTimeout passes.
func (d *Daemon) waitReady(ctx context.Context) error {
	cli, err := client.New(client.WithHost(d.Host))
	if err != nil {
		return err
	}
	d.Client = cli
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case exitErr := <-d.done:
			d.done <- exitErr
			return fmt.Errorf("dockerd exited at start (%w): %s", exitErr, d.logTail())
		case <-ctx.Done():
			return fmt.Errorf("dockerd did not answer within %s: %s", StartTimeout, d.logTail())
		case <-tick.C:
		}
	}
}

// logTail is the end of the daemon's log, for errors.
func (d *Daemon) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dockerd.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], " | ")
}

// Close stops the daemon (SIGTERM, then SIGKILL to its group after 15 s)
// with whatever containers it runs, and removes its directory and its
// bridge. It may be called more than once.
func (d *Daemon) Close() { d.closeOnce.Do(d.close) }

func (d *Daemon) close() {
	if d.Client != nil {
		d.Client.Close()
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
	// A daemon that ran a container leaves the mount of its default
	// network namespace under its exec root, which the removal cannot go
	// through: detach what is mounted below Dir first, innermost first.
	for _, m := range slices.Backward(mountsUnder(d.Dir)) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	_ = os.RemoveAll(d.Dir)
	delBridge(d.bridge)
}

// mountsUnder lists the mount points below dir, in /proc/self/mountinfo's
// order (parents before their children).
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	prefix := filepath.Clean(dir) + "/"
	var out []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], prefix) {
			out = append(out, f[4])
		}
	}
	return out
}

// Test starts a daemon for t and stops it when t ends, or skips t with the
// reason where no daemon of our own can start here.
func Test(t testing.TB) *Daemon {
	t.Helper()
	d, err := Start(context.Background(), "")
	if err != nil {
		t.Skipf("a second Docker daemon cannot start here: %v", err)
	}
	t.Cleanup(d.Close)
	return d
}

// BuildScratchImage builds, in the daemon cli talks to, an image FROM
// scratch holding files (name to content; mode 0755) with the given
// labels, and returns its ID. Nothing is pulled. The classic builder is
// used: BuildKit needs a session.
func BuildScratchImage(ctx context.Context, cli *client.Client, files map[string][]byte, labels map[string]string) (string, error) {
	var dockerfile strings.Builder
	dockerfile.WriteString("FROM scratch\n")
	names := slices.Sorted(maps.Keys(files))
	for _, name := range names {
		fmt.Fprintf(&dockerfile, "COPY %s /%s\n", name, name)
	}
	var buildCtx bytes.Buffer
	tw := tar.NewWriter(&buildCtx)
	add := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("Dockerfile", 0o644, []byte(dockerfile.String())); err != nil {
		return "", err
	}
	for _, name := range names {
		if err := add(name, 0o755, files[name]); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	res, err := cli.ImageBuild(ctx, &buildCtx, client.ImageBuildOptions{
		Remove: true, ForceRemove: true, Labels: labels, Version: build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	defer res.Body.Close()
	id := ""
	dec := json.NewDecoder(res.Body)
	for {
		var msg jsonstream.Message
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("build image: read output: %w", err)
		}
		if msg.Error != nil {
			return "", fmt.Errorf("build image: %s", msg.Error.Message)
		}
		if msg.Aux != nil {
			var aux struct {
				ID string `json:"ID"`
			}
			if json.Unmarshal(*msg.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
	}
	if id == "" {
		return "", errors.New("build image: the daemon gave no image ID")
	}
	return id, nil
}

// TestImage builds, in the daemon of cli, an image FROM scratch holding
// size random bytes (so that no other daemon holds it yet), and removes it
// when t ends.
func TestImage(t testing.TB, cli *client.Client, size int) string {
	t.Helper()
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	id, err := BuildScratchImage(t.Context(), cli, map[string][]byte{"payload": payload}, map[string]string{"physarum.test": t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Not t.Context(): it is cancelled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = cli.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	return id
}
