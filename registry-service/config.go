package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/registry"
)

// config is everything registry-service is told at start.
type config struct {
	node *nodeflags.Flags

	newCluster    bool
	local         bool
	dataDir       string
	etcdIP        string
	clientPort    int
	peerPort      int
	voters        int
	writers       map[peer.ID]bool
	joinTimeout   time.Duration
	unsafeNoFsync bool
	maxScale      int
	// prometheusURL is what autoscaling's prometheus checks query.
	prometheusURL string
	apiListen     string
	apiToken      string
	apiPublicRead bool
}

const usage = `Usage: registry-service [OPTIONS]

Runs a member of the Physarum registry: etcd embedded in this process,
serving service definitions, node and instance records over the private
network. Start the first member with -new-etcd-cluster; later members find
the registry through their bootstrap peers and join it (as voting members up
to -voters, then as clients of the cluster). A member restarts from
-data-dir.

Examples:
  registry-service -new-etcd-cluster -psk-file net.psk -listen /ip4/0.0.0.0/tcp/4001
  registry-service -psk-file net.psk -bootstrap /ip4/10.0.0.1/tcp/4001/p2p/12D3Koo... \
      -etcd-ip 10.0.0.2

OPTIONS:
`

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "physarum", "registry-service")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "physarum", "registry-service")
	}
	return "registry-data"
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("registry-service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	c := &config{node: nodeflags.Register(fs, "registry-service", nodeflags.Defaults{PromListen: ":9102", DHTServer: true})}
	fs.BoolVar(&c.newCluster, "new-etcd-cluster", false, "start a new registry cluster with this member as its first")
	fs.BoolVar(&c.local, "local", false, "for debugging: do not connect to bootstrap peers (overrides -bootstrap)")
	fs.StringVar(&c.dataDir, "data-dir", defaultDataDir(), "directory for etcd's data and this member's TLS files")
	fs.StringVar(&c.etcdIP, "etcd-ip", "127.0.0.1", "IP address etcd listens on and advertises to other members")
	fs.IntVar(&c.clientPort, "etcd-client-port", 2379, "etcd client port")
	fs.IntVar(&c.peerPort, "etcd-peer-port", 2380, "etcd peer port")
	fs.IntVar(&c.voters, "voters", 3, "most voting etcd members (odd: 1, 3, 5 or 7); later members join as clients")
	writers := fs.String("writers", "", "comma-separated peer IDs that alone may add and delete services (default: any peer in the network)")
	fs.DurationVar(&c.joinTimeout, "join-timeout", 2*time.Minute, "how long to keep trying to join an existing registry")
	fs.BoolVar(&c.unsafeNoFsync, "unsafe-no-fsync", false, "skip fsync in etcd (tests only: a power loss loses acknowledged writes)")
	fs.IntVar(&c.maxScale, "max-scale", registry.DefaultMaxScale, "largest desired count a scale may ask for")
	fs.StringVar(&c.prometheusURL, "prometheus-url", "", "Prometheus server (http://host:9090) that autoscaling policies' prometheus checks query; without it such checks have no value and change nothing")
	fs.StringVar(&c.apiListen, "api-listen", "127.0.0.1:7001", "address of the HTTP API (Genisys-compatible; \"\" turns it off); beyond loopback it needs -api-token-file")
	tokenFile := fs.String("api-token-file", "", "file holding the bearer token the HTTP API requires for writes (and reads, unless -api-public-read)")
	fs.BoolVar(&c.apiPublicRead, "api-public-read", false, "with -api-token-file: let reads through without the token")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	if err := c.node.Validate(os.Getenv); err != nil {
		return nil, err
	}
	if ip := net.ParseIP(c.etcdIP); ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("-etcd-ip %q: want the IP address other members reach this one at (not 0.0.0.0)", c.etcdIP)
	}
	for name, p := range map[string]int{"-etcd-client-port": c.clientPort, "-etcd-peer-port": c.peerPort} {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("%s %d: not a port", name, p)
		}
	}
	if c.clientPort == c.peerPort {
		return nil, fmt.Errorf("-etcd-client-port and -etcd-peer-port are both %d", c.peerPort)
	}
	if c.voters < 1 || c.voters > 7 || c.voters%2 == 0 {
		return nil, fmt.Errorf("-voters %d: want 1, 3, 5 or 7 (an even count tolerates no more failures than the odd one below it)", c.voters)
	}
	var err error
	if c.writers, err = parseWriters(*writers); err != nil {
		return nil, err
	}
	if c.dataDir == "" {
		return nil, errors.New("-data-dir: empty")
	}
	if c.prometheusURL != "" {
		if u, err := url.Parse(c.prometheusURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("-prometheus-url %q: want an http:// or https:// URL such as http://127.0.0.1:9090", c.prometheusURL)
		}
	}
	if c.maxScale < 1 {
		return nil, fmt.Errorf("-max-scale %d: want at least 1", c.maxScale)
	}
	if c.apiToken, err = readToken(*tokenFile); err != nil {
		return nil, err
	}
	if err := checkAPIListen(c.apiListen, c.apiToken != ""); err != nil {
		return nil, err
	}
	if c.apiPublicRead && c.apiToken == "" {
		return nil, errors.New("-api-public-read needs -api-token-file (without a token every read is public already, on loopback)")
	}
	return c, nil
}

// readToken reads the API's bearer token: the file's first line, at
// least 16 characters.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("-api-token-file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if len(tok) < 16 {
		return "", fmt.Errorf("-api-token-file %s: the token is %d characters; want at least 16 (e.g. openssl rand -hex 32 > %s)", path, len(tok), path)
	}
	return tok, nil
}

// checkAPIListen refuses an API beyond loopback without a token: it
// would let anyone who reaches it change what runs.
func checkAPIListen(addr string, hasToken bool) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-api-listen %q: want host:port (e.g. 127.0.0.1:7001)", addr)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("-api-listen %q: port %q is not a number", addr, port)
	}
	if hasToken {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-api-listen %s is beyond loopback: give -api-token-file too, or listen on 127.0.0.1", addr)
	}
	return nil
}

func parseWriters(s string) (map[peer.ID]bool, error) {
	out := map[peer.ID]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		id, err := peer.Decode(f)
		if err != nil {
			return nil, fmt.Errorf("-writers: %q is not a peer ID: %w", f, err)
		}
		out[id] = true
	}
	return out, nil
}
