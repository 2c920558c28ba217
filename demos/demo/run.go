package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/physarum-p2p/physarum/common/dockerd"
	"github.com/physarum-p2p/physarum/common/freeport"
	"github.com/physarum-p2p/physarum/common/launch"
)

type options struct {
	bin, services, dir, runtime string
	// daemons is daemonsShared (every site on this machine's Docker
	// daemon) or daemonsSeparate (a daemon of its own per site).
	daemons           string
	port, metricsBase int
	oneshot           bool
	// autoscale: after the report, show hello autoscaling under a load.
	autoscale bool
	// rollout: then show a rolling update of hello under a load, by
	// strategy (registry.StrategyRolling or StrategyBlueGreen).
	rollout  bool
	strategy string
}

// metricsPort is the i-th fixed metrics port, or a free one.
func (o options) metricsPort(i int) int {
	if o.metricsBase > 0 {
		return o.metricsBase + i
	}
	return freeport.One("127.0.0.1")
}

// site is one allocator, standing in for a site some distance away.
type site struct {
	name  string
	ip    string        // its own loopback address: traffic within a site is not delayed
	delay time.Duration // user-space latency of its node
	cpus  string
	peer  string
	prom  int
	// daemon is the site's own Docker daemon (-daemons separate), else nil.
	daemon *dockerd.Daemon
}

var sites = []*site{
	{name: "site-a", ip: "127.0.0.2", delay: time.Millisecond, cpus: "1"},
	{name: "site-b", ip: "127.0.0.3", delay: 3 * time.Millisecond, cpus: "1"},
	{name: "site-c", ip: "127.0.0.4", delay: 6 * time.Millisecond, cpus: "2"},
}

// services are the demo services, in the order they are registered.
var services = []string{"hello", "calculator", "sensor", "aggregator", "analytics"}

type demo struct {
	o       options
	dir     string
	env     []string
	runtime string
	procs   []*launch.Proc
	boot    string
	regProm int
	api     string // the registry's HTTP API base URL
	proxy   string // client proxy base URL
	proxyP  int    // client proxy metrics port
	start   time.Time
	// separate: every site runs on a Docker daemon of its own.
	separate bool
	// cliEnv is added to registry-cli's environment (the daemon it builds
	// images in).
	cliEnv []string
}

func say(format string, args ...any) {
	fmt.Printf("[demo] "+format+"\n", args...)
}

func run(ctx context.Context, o options) int {
	d := &demo{o: o, start: time.Now()}
	defer d.teardown()
	if err := d.up(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	ok := d.report(ctx)
	if d.separate {
		d.showTravel(ctx)
	}
	scaled := true
	if o.autoscale && ctx.Err() == nil {
		scaled = d.showAutoscale(ctx)
	}
	rolled := true
	if o.rollout && ctx.Err() == nil {
		rolled = d.showRollout(ctx)
	}
	if o.oneshot {
		if !ok {
			fmt.Fprintln(os.Stderr, "demo: not every demo service answered (logs in "+d.dir+")")
			return 1
		}
		if !scaled {
			fmt.Fprintln(os.Stderr, "demo: hello did not scale out and back under the load (logs in "+d.dir+")")
			return 1
		}
		if !rolled {
			fmt.Fprintln(os.Stderr, "demo: the rolling update of hello did not succeed with no request failed (logs in "+d.dir+")")
			return 1
		}
		return 0
	}
	d.howTo()
	<-ctx.Done()
	fmt.Println()
	return 0
}

// up starts the network and registers the services, saying what it does.
func (d *demo) up(ctx context.Context) error {
	if err := d.prepare(ctx); err != nil {
		return err
	}
	if err := d.startRegistry(ctx); err != nil {
		return err
	}
	if err := d.startAllocators(ctx); err != nil {
		return err
	}
	if err := d.register(ctx); err != nil {
		return err
	}
	return d.startProxy(ctx)
}

func (d *demo) prepare(ctx context.Context) error {
	for _, b := range []string{"registry-service", "allocator", "proxy", "registry-cli"} {
		if _, err := os.Stat(filepath.Join(d.o.bin, b)); err != nil {
			return fmt.Errorf("%s not found in %s: run 'make build' first (or give -bin)", b, d.o.bin)
		}
	}
	d.dir = d.o.dir
	if d.dir == "" {
		var err error
		if d.dir, err = os.MkdirTemp("", "physarum-demo-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	say("work directory %s (data and logs)", d.dir)
	// A fresh passphrase per run: the network is private to this demo.
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	pass := hex.EncodeToString(b)
	if err := os.WriteFile(filepath.Join(d.dir, "network.psk"), []byte(pass+"\n"), 0o600); err != nil {
		return err
	}
	d.env = []string{"P2P_PSK=" + pass, "PHYSARUM_FAST_TIMING=1"}
	d.runtime = d.o.runtime
	switch d.runtime {
	case "docker", "process", "":
	default:
		return fmt.Errorf("runtime %q: want docker or process", d.runtime)
	}
	var sepErr error // why the sites could not have daemons of their own
	switch d.o.daemons {
	case daemonsShared, "":
	case daemonsSeparate:
		if d.runtime == "process" {
			break
		}
		ds, err := startDaemons(ctx)
		if err != nil {
			sepErr = err
			break
		}
		for i, s := range sites {
			s.daemon = ds[i]
		}
		d.separate = true
		d.runtime = "docker"
		// Images are built at site-a, as an operator there would.
		d.cliEnv = []string{"DOCKER_HOST=" + ds[0].Host}
		say("runtime: docker, each site on a Docker daemon of its own (DEMO_DAEMONS=separate): %s", daemonsLine(ds))
		say("images are built in site-a's daemon; registry-cli add hands each to the nearest sites, the others fetch it when they need it")
		return nil
	default:
		return fmt.Errorf("daemons %q: want shared or separate", d.o.daemons)
	}
	switch d.runtime {
	case "docker", "process":
		say("runtime: %s (as asked)", d.runtime)
	case "":
		if err := dockerAnswers(); err == nil {
			d.runtime = "docker"
			say("runtime: docker (a Docker daemon answers; images are built locally FROM scratch)")
		} else {
			d.runtime = "process"
			say("runtime: process (no Docker daemon answers: %v)", err)
		}
	}
	switch {
	case d.o.daemons == daemonsSeparate && sepErr == nil:
		say("DEMO_DAEMONS=separate: ignored under the process runtime")
	case sepErr != nil && d.runtime == "docker":
		say("DEMO_DAEMONS=separate: cannot start a Docker daemon of our own: %v; every site shares this machine's daemon", sepErr)
	case sepErr != nil:
		say("DEMO_DAEMONS=separate: cannot start a Docker daemon of our own: %v; the sites run processes", sepErr)
	case d.runtime == "docker":
		say("every site uses this machine's Docker daemon (DEMO_DAEMONS=separate gives each one of its own; root needed)")
	}
	return nil
}

func dockerAnswers() error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = cli.Ping(ctx, client.PingOptions{})
	return err
}

func (d *demo) startRegistry(ctx context.Context) error {
	start := time.Now()
	d.regProm = d.o.metricsPort(0)
	r := launch.Registry{
		Node: launch.Node{
			KeyFile: filepath.Join(d.dir, "registry.key"), AddrFile: filepath.Join(d.dir, "registry.addr"),
			Metrics: "127.0.0.1:" + strconv.Itoa(d.regProm),
		},
		DataDir: filepath.Join(d.dir, "registry"),
	}
	p, err := d.spawn("registry", "registry-service", r.Args())
	if err != nil {
		return err
	}
	if d.boot, err = p.Ready(ctx, launch.RegistryReady, time.Minute, r.AddrFile); err != nil {
		return err
	}
	d.api = r.APIURL()
	d.env = append(d.env, "P2P_BOOTSTRAPS="+d.boot)
	say("registry (and bootstrap) ready in %s: %s", since(start), d.boot)
	return nil
}

func (d *demo) startAllocators(ctx context.Context) error {
	start := time.Now()
	var names []string
	for _, s := range sites {
		names = append(names, fmt.Sprintf("%s on %s (%s away)", s.name, s.ip, s.delay))
	}
	say("starting 3 allocators: %s", strings.Join(names, ", "))
	say("(distances between sites are simulated in user space; within a site there is none)")
	var procs []*launch.Proc
	for i, s := range sites {
		s.prom = d.o.metricsPort(1 + i)
		env := []string{"PHYSARUM_NET_DELAY=" + s.delay.String(), "PHYSARUM_NET_DELAY_CROSS_HOST=1"}
		if s.daemon != nil {
			env = append(env, "DOCKER_HOST="+s.daemon.Host)
		}
		p, err := d.spawn(s.name, "allocator", launch.Allocator{
			Node: launch.Node{
				KeyFile: filepath.Join(d.dir, s.name+".key"), IP: s.ip, AddrFile: filepath.Join(d.dir, s.name+".addr"),
				Metrics: "127.0.0.1:" + strconv.Itoa(s.prom),
			},
			Name: s.name, DataDir: filepath.Join(d.dir, s.name), Runtime: d.runtime, CPUs: s.cpus, MemoryMiB: 1024,
			Labels: "site=" + s.name, Proxy: filepath.Join(d.o.bin, "proxy"), IdleTimeout: 10 * time.Minute,
		}.Args(), env...)
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	for i, p := range procs {
		addr, err := p.Ready(ctx, launch.AllocatorReady, time.Minute, filepath.Join(d.dir, sites[i].name+".addr"))
		if err != nil {
			return err
		}
		sites[i].peer = addr[strings.LastIndex(addr, "/")+1:]
	}
	say("allocators ready in %s", since(start))
	return nil
}

// register adds every demo service with registry-cli, building images for
// the Docker runtime.
func (d *demo) register(ctx context.Context) error {
	start := time.Now()
	conf := d.o.services
	for _, name := range services {
		var args []string
		if d.runtime == "docker" {
			where := ""
			if d.separate {
				where = " in site-a's daemon"
			}
			say("building image physarum-demo/%s%s and registering %s", name, where, name)
			args = []string{"add", "-dir", d.o.bin, filepath.Join(conf, name+".docker.json"), "physarum-demo/" + name + ":latest", name}
		} else {
			path, err := d.execConfig(name)
			if err != nil {
				return err
			}
			args = []string{"add", path, name}
		}
		if _, err := d.cli(ctx, args...); err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
	}
	say("registered %s in %s", strings.Join(services, ", "), since(start))
	return nil
}

// execConfig writes the service's process config with ${DEMO_BIN} filled in.
func (d *demo) execConfig(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(d.o.services, name+".exec.json"))
	if err != nil {
		return "", fmt.Errorf("demo service config: %w", err)
	}
	bin, err := filepath.Abs(d.o.bin)
	if err != nil {
		return "", err
	}
	out := filepath.Join(d.dir, name+".exec.json")
	return out, os.WriteFile(out, []byte(strings.ReplaceAll(string(b), "${DEMO_BIN}", bin)), 0o644)
}

// cli runs registry-cli and returns its stdout.
func (d *demo) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(d.o.bin, "registry-cli"),
		append([]string{"-keyfile", filepath.Join(d.dir, "cli.key")}, args...)...)
	cmd.Env = append(append(os.Environ(), d.env...), d.cliEnv...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("registry-cli %s: %w: %s", args[0], err, strings.TrimSpace(lastLine(errb.String())))
	}
	return out.String(), nil
}

func (d *demo) cliJSON(ctx context.Context, v any, args ...string) error {
	out, err := d.cli(ctx, append([]string{"-json"}, args...)...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

func (d *demo) startProxy(ctx context.Context) error {
	port := freeport.Prefer("127.0.0.1", d.o.port)
	d.proxyP = d.o.metricsPort(4)
	p, err := d.spawn("proxy", "proxy", launch.ClientProxy{
		Node: launch.Node{
			KeyFile: filepath.Join(d.dir, "proxy.key"), Metrics: "127.0.0.1:" + strconv.Itoa(d.proxyP),
		},
		HTTPPort: port,
	}.Args())
	if err != nil {
		return err
	}
	if err := p.WaitOutput(ctx, launch.ProxyReady, 30*time.Second); err != nil {
		return err
	}
	d.proxy = "http://127.0.0.1:" + strconv.Itoa(port)
	say("client proxy ready: %s/<service>/<path>", d.proxy)
	return nil
}

// teardown stops the proxy, then the allocators (which stop their
// instances), then the registry; then the sites' own Docker daemons, with
// their images, or the images built in this machine's daemon.
func (d *demo) teardown() {
	if len(d.procs) > 0 {
		say("stopping the network")
		for i := len(d.procs) - 1; i >= 0; i-- {
			d.procs[i].Stop(30 * time.Second)
		}
	}
	var ds []*dockerd.Daemon
	for _, s := range sites {
		if s.daemon != nil {
			ds = append(ds, s.daemon)
			s.daemon = nil
		}
	}
	switch {
	case len(ds) > 0:
		closeDaemons(ds)
		say("stopped the sites' %d Docker daemons and removed their directories (and the images in them)", len(ds))
	case len(d.procs) > 0 && d.runtime == "docker":
		removeImages()
	}
}

// removeImages removes the images register built: every run builds them
// afresh, so keeping them would only fill the disk.
func removeImages() {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	for _, name := range services {
		if _, err := cli.ImageRemove(ctx, "physarum-demo/"+name+":latest", client.ImageRemoveOptions{Force: true, PruneChildren: true}); err == nil {
			n++
		}
	}
	if _, err := cli.ImageRemove(ctx, roImage, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err == nil {
		n++ // -rollout's new version
	}
	if n > 0 {
		say("removed the %d images the demo built", n)
	}
}

func since(t time.Time) string { return time.Since(t).Round(10 * time.Millisecond).String() }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
