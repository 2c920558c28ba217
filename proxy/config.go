package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/common/nodeflags"
	"github.com/physarum-p2p/physarum/registry"
)

// config is what the proxy was told.
type config struct {
	node *nodeflags.Flags

	port        int    // local HTTP port
	listenIP    string // local HTTP address
	service     string // service mode: the service served
	address     string // service mode: where it listens (host:port)
	metricsPort int    // 0: none (or -prom-listen-addr)
	instance    bool   // instance mode
	clientOnly  bool   // instance mode with PROXY_MODE=client
	child       []string
	key         crypto.PrivKey // instance mode: from PROXY_KEY
	p2pPort     int            // instance mode: libp2p port
	p2pIP       string         // instance mode: libp2p address

	allocTimeout time.Duration
	attempts     int
	procs        int // GOMAXPROCS unless the environment sets it; 0: Go's default
}

const usage = `Usage:
  proxy [OPTIONS] PORT                                client mode (PORT 0: any free port)
  proxy [OPTIONS] PORT SERVICE ADDRESS [METRICS_PORT]  service mode
  proxy -instance [-- COMMAND [ARGS...]]             instance mode

Client mode serves http://127.0.0.1:PORT/<service>/<path>?<query>: each
request goes to the nearest running instance of <service> within its
latency requirement, over the private network; when there is none, an
instance is started on a nearby node and the request waits for it.

Service mode does the same, and also serves one instance of SERVICE, whose
HTTP server listens at ADDRESS, to the network.

Instance mode is how allocators run instances: every setting comes from the
environment (PROXY_PORT, PROXY_IP, SERVICE_PORT, PHYSARUM_SERVICE,
PHYSARUM_INSTANCE_ID, P2P_PORT, P2P_IP, P2P_BOOTSTRAPS, P2P_PSK, PROXY_KEY,
PROXY_MODE, METRICS_PORT); ${VAR} in COMMAND is expanded from it. COMMAND
is started as the proxy's child with the same environment, gets the signals
the proxy gets, and the proxy exits with it.

Examples:
  proxy -psk-file net.psk -bootstrap /ip4/10.0.0.1/tcp/4001/p2p/12D3Koo... 8080
  curl http://127.0.0.1:8080/hello/

OPTIONS:
`

func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (*config, error) {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	c := &config{node: nodeflags.Register(fs, "proxy", nodeflags.Defaults{})}
	fs.BoolVar(&c.instance, "instance", false, "instance mode: read the allocator's environment contract (see above)")
	fs.StringVar(&c.listenIP, "listen-ip", "127.0.0.1", "address of the local HTTP port")
	fs.DurationVar(&c.allocTimeout, "alloc-timeout", 15*time.Second, "how long a request waits for a new instance")
	fs.IntVar(&c.attempts, "attempts", 3, "instances one request is tried on when they cannot be reached")
	fs.IntVar(&c.procs, "procs", 1, "threads running the proxy's Go code at once (GOMAXPROCS; the environment variable wins). "+
		"One keeps a request's hand-offs between goroutines from waking a second thread; 0: one per core")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.node.Validate(getenv); err != nil {
		return nil, err
	}
	if net.ParseIP(c.listenIP) == nil {
		return nil, fmt.Errorf("-listen-ip %q: not an IP address", c.listenIP)
	}
	if c.attempts < 1 || c.allocTimeout <= 0 {
		return nil, errors.New("-attempts must be at least 1 and -alloc-timeout positive")
	}
	if c.procs < 0 {
		return nil, fmt.Errorf("-procs %d: want 0 or more", c.procs)
	}
	if c.instance {
		return c, c.fromEnv(fs.Args(), getenv)
	}
	return c, c.fromArgs(fs.Args())
}

func (c *config) fromArgs(args []string) error {
	if len(args) != 1 && len(args) != 3 && len(args) != 4 {
		return fmt.Errorf("want PORT, or PORT SERVICE ADDRESS [METRICS_PORT] (got %d arguments; see -help)", len(args))
	}
	var err error
	if args[0] == "0" {
		c.port = 0 // any free port; the proxy prints which
	} else if c.port, err = parsePort("PORT", args[0]); err != nil {
		return err
	}
	if len(args) == 1 {
		return nil
	}
	c.service, c.address = args[1], args[2]
	if err := registry.ValidateName(c.service); err != nil {
		return fmt.Errorf("SERVICE: %w", err)
	}
	if _, _, err := net.SplitHostPort(c.address); err != nil {
		return fmt.Errorf("ADDRESS %q: want host:port", c.address)
	}
	if len(args) == 4 {
		if c.metricsPort, err = parsePort("METRICS_PORT", args[3]); err != nil {
			return err
		}
	}
	return nil
}

// fromEnv reads the instance contract (common/instenv).
func (c *config) fromEnv(args []string, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	// ${VAR} in the command is the instance's environment (SERVICE_PORT,
	// ...): there is no shell to expand it, in a FROM scratch image least.
	for _, a := range args {
		c.child = append(c.child, os.Expand(a, getenv))
	}
	var err error
	if c.port, err = parsePort(instenv.ProxyPort, getenv(instenv.ProxyPort)); err != nil {
		return err
	}
	mode := getenv(instenv.ProxyMode)
	switch mode {
	case "", instenv.ModeService:
		c.service = getenv(instenv.Service)
		if err := registry.ValidateName(c.service); err != nil {
			return fmt.Errorf("%s: %w", instenv.Service, err)
		}
		sp, err := parsePort(instenv.ServicePort, getenv(instenv.ServicePort))
		if err != nil {
			return err
		}
		ip := getenv(instenv.ProxyIP)
		if ip == "" {
			ip = "127.0.0.1"
		}
		c.address = net.JoinHostPort(ip, strconv.Itoa(sp))
	case instenv.ModeClient:
		c.clientOnly = true
	default:
		return fmt.Errorf("%s %q: want service or client", instenv.ProxyMode, mode)
	}
	if v := getenv(instenv.MetricsPort); v != "" {
		if c.metricsPort, err = parsePort(instenv.MetricsPort, v); err != nil {
			return err
		}
	}
	if c.p2pPort, err = parsePort(instenv.P2PPort, getenv(instenv.P2PPort)); err != nil {
		return err
	}
	c.p2pIP = getenv(instenv.P2PIP)
	if c.p2pIP == "" {
		c.p2pIP = "0.0.0.0"
	}
	if ip := net.ParseIP(c.p2pIP); ip == nil || ip.To4() == nil {
		return fmt.Errorf("%s %q: not an IPv4 address", instenv.P2PIP, c.p2pIP)
	}
	if v := getenv(instenv.ProxyKey); v != "" {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%s: not base64: %w", instenv.ProxyKey, err)
		}
		if c.key, err = crypto.UnmarshalPrivateKey(b); err != nil {
			return fmt.Errorf("%s: %w", instenv.ProxyKey, err)
		}
	}
	// The identity is PROXY_KEY's, or new for each run: an instance has no
	// key file of its own.
	c.node.Ephemeral = true
	return nil
}

func parsePort(name, s string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p <= 0 || p > 65535 {
		if s == "" {
			return 0, fmt.Errorf("%s: missing", name)
		}
		return 0, fmt.Errorf("%s %q: not a port number", name, s)
	}
	return p, nil
}
