package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/allocator/images"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/registry"
)

type config struct {
	node          *nodeflags.Flags
	name          string
	runtime       string
	cpuMillis     int
	memoryMiB     int
	labels        map[string]string
	dataDir       string
	proxyPath     string
	idleTimeout   time.Duration
	leaseTTL      time.Duration
	startTimeout  time.Duration
	drainGrace    time.Duration
	maxRestarts   int
	keepInstances bool
	// connectorListen is where seed 001's connector protocol is served
	// for this node ("": not served).
	connectorListen string
	// pull is the image pull policy (images.PullNever or PullMissing).
	pull string
	// imageGrace is how long an image no service uses stays on the node.
	imageGrace time.Duration
	// imageMaxSize bounds an image stream taken from a peer, in bytes.
	imageMaxSize int64
	// imageTransfers bounds image transfers served at once, each way.
	imageTransfers int
}

const usage = `Usage: allocator [OPTIONS]

Offers this node's CPU and memory to the Physarum network and runs
instances of registered services on it, as proxies ask for them and as
desired counts need them: Docker containers (built FROM scratch, never
pulled from outside the network unless -pull allows it) or local
processes, each behind its proxy. A Docker node fetches an image it lacks
from the nearest node that holds it, and serves the images it holds to
others. Instances survive the allocator's crash; a restarted allocator
adopts them. On SIGINT or SIGTERM it stops its instances and leaves the
network, unless -keep-instances.

Examples:
  allocator -psk-file net.psk -bootstrap /ip4/10.0.0.1/tcp/4001/p2p/12D3Koo...
  allocator -name lab-1 -runtime process -cpus 2 -memory 2048 -labels site=lab,rack=3 ...
  allocator -name edge-1 -connector-listen 10.0.0.5:7051 ...   (a Genisys connector for this node)

OPTIONS:
`

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "physarum", "allocator")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "physarum", "allocator")
	}
	return "allocator-data"
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("allocator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	c := &config{node: nodeflags.Register(fs, "allocator", nodeflags.Defaults{PromListen: ":9103"})}
	fs.StringVar(&c.name, "name", "", "this allocator's name: unique among the live allocators of the network (a taken one is refused at start), and the name of the compute made of this node alone; lower-case letters, digits, '.', '_' and '-' (default: the host name, lower-cased, other characters made '-')")
	fs.StringVar(&c.runtime, "runtime", "auto", "how to run instances: docker, process, or auto (Docker when a daemon answers, plus processes)")
	cpus := fs.String("cpus", "", "CPU offered, in cores (e.g. 2 or 0.5; default: this host's cores)")
	fs.IntVar(&c.memoryMiB, "memory", 0, "memory offered, in MiB (default: this host's memory)")
	labels := fs.String("labels", "", "comma-separated key=value labels published in the node record")
	fs.StringVar(&c.dataDir, "data-dir", defaultDataDir(), "directory for process instances' state and logs")
	fs.StringVar(&c.proxyPath, "proxy", "", "proxy binary for process instances (default: proxy beside this executable, else on PATH)")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 5*time.Minute, "stop on-demand instances that served nothing for this long")
	fs.DurationVar(&c.leaseTTL, "lease-ttl", 10*time.Second, "lease of the node record: a dead node leaves the registry after this long")
	fs.DurationVar(&c.startTimeout, "start-timeout", time.Minute, "give up on an instance not healthy after this long")
	fs.IntVar(&c.maxRestarts, "max-restarts", 5, "restarts of a crashing instance before it is marked failed")
	fs.DurationVar(&c.drainGrace, "drain-grace", 10*time.Second, "a stopping instance gets no new requests and may finish those it has for up to this long before it is stopped")
	fs.StringVar(&c.connectorListen, "connector-listen", "", "serve seed 001's connector protocol (Genisys) for this node on this address, conventionally :7051 (default: off); scale and status act on this node alone. It has no token: whoever reaches the address can scale services here and add, change or delete service definitions, so listen where only the Genisys that drives it can reach")
	fs.BoolVar(&c.keepInstances, "keep-instances", false, "on exit, leave instances running for the next allocator to adopt")
	fs.StringVar(&c.pull, "pull", images.PullNever, "outside registries: never (images come only from the network's nodes), or missing (an image reference that names a registry, and that no node holds, is pulled from it)")
	fs.DurationVar(&c.imageGrace, "image-gc-grace", images.DefaultGrace, "remove an image this node fetched or held for a service once no registered service has used it, and no container run it, for this long")
	imageMaxMiB := fs.Int64("image-max-size", images.DefaultMaxSize>>20, "largest image stream taken from a peer, in MiB")
	fs.IntVar(&c.imageTransfers, "image-transfers", images.DefaultMaxTransfers, "image transfers served at once, each way (one more is told busy and tries another holder)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.node.Validate(os.Getenv); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	if c.name == "" {
		if c.name = defaultName(os.Hostname); c.name == "" {
			return nil, errors.New("-name not given, and the host name makes no name; give this allocator a -name, unique in the network")
		}
	}
	if err := registry.ValidateComputeName(c.name); err != nil {
		return nil, fmt.Errorf("-name %q: %w", c.name, err)
	}
	if c.connectorListen != "" {
		if _, port, err := net.SplitHostPort(c.connectorListen); err != nil || port == "" {
			return nil, fmt.Errorf("-connector-listen %q: want host:port or :port, such as :7051", c.connectorListen)
		}
	}
	switch c.runtime {
	case "auto", registry.RuntimeDocker, registry.RuntimeProcess:
	default:
		return nil, fmt.Errorf("-runtime %q: want docker, process or auto", c.runtime)
	}
	var err error
	if c.cpuMillis, err = parseCPUs(*cpus); err != nil {
		return nil, err
	}
	if c.memoryMiB < 0 {
		return nil, fmt.Errorf("-memory %d: must be positive (MiB)", c.memoryMiB)
	}
	if c.memoryMiB == 0 {
		if c.memoryMiB, err = hostMemoryMiB(); err != nil {
			return nil, fmt.Errorf("-memory not given and %w", err)
		}
	}
	if c.proxyPath != "" {
		// Instances start in directories of their own: a relative path
		// would not find the proxy there.
		if c.proxyPath, err = filepath.Abs(c.proxyPath); err != nil {
			return nil, fmt.Errorf("-proxy: %w", err)
		}
		if st, err := os.Stat(c.proxyPath); err != nil || st.IsDir() {
			return nil, fmt.Errorf("-proxy %s: not a program", c.proxyPath)
		}
	}
	if c.labels, err = parseLabels(*labels); err != nil {
		return nil, err
	}
	if c.leaseTTL < 2*time.Second || c.leaseTTL > 5*time.Minute {
		return nil, fmt.Errorf("-lease-ttl %s: want 2s to 5m (the registry's bounds)", c.leaseTTL)
	}
	switch c.pull {
	case images.PullNever, images.PullMissing:
	default:
		return nil, fmt.Errorf("-pull %q: want never or missing", c.pull)
	}
	if c.imageGrace <= 0 || *imageMaxMiB <= 0 || c.imageTransfers <= 0 {
		return nil, errors.New("-image-gc-grace, -image-max-size and -image-transfers must be positive")
	}
	c.imageMaxSize = *imageMaxMiB << 20
	if c.idleTimeout <= 0 || c.startTimeout <= 0 || c.drainGrace <= 0 || c.maxRestarts < 0 {
		return nil, errors.New("-idle-timeout, -start-timeout and -drain-grace must be positive, -max-restarts not negative")
	}
	return c, nil
}

// defaultName makes an allocator's name of the host's: lower-cased, each
// character a name cannot hold replaced by '-', at most 63 characters,
// starting and ending with a letter or digit; "" when nothing is left.
func defaultName(hostname func() (string, error)) string {
	h, err := hostname()
	if err != nil {
		return ""
	}
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, strings.ToLower(h))
	name = strings.Trim(name, "._-")
	if len(name) > registry.MaxNameLen {
		name = strings.TrimRight(name[:registry.MaxNameLen], "._-")
	}
	return name
}

// parseCPUs reads -cpus (cores, possibly fractional) as millicores.
func parseCPUs(s string) (int, error) {
	if s == "" {
		return goruntime.NumCPU() * 1000, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f > 1000 {
		return 0, fmt.Errorf("-cpus %q: want a number of cores such as 2 or 0.5", s)
	}
	return int(f * 1000), nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// hostMemoryMiB reads MemTotal from /proc/meminfo.
func hostMemoryMiB() (int, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("cannot read this host's memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.Atoi(fields[1])
			if err != nil {
				break
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("cannot read MemTotal from /proc/meminfo")
}
