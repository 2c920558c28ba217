// Package nodeflags registers the flags every Physarum daemon and CLI
// shares (PSK, identity, bootstrap, listen, metrics, logging) and resolves
// them, with their environment fallbacks, into a p2p.Config.
package nodeflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/keys"
	"github.com/physarum-p2p/physarum/common/logging"
	"github.com/physarum-p2p/physarum/common/netdelay"
	"github.com/physarum-p2p/physarum/common/p2p"
	"github.com/physarum-p2p/physarum/common/psk"
)

// Environment variables read by Resolve.
const (
	// EnvBootstraps holds space-separated bootstrap multiaddrs, used when no
	// -bootstrap flag is given.
	EnvBootstraps = "P2P_BOOTSTRAPS"
	// EnvNetDelay adds user-space latency (a Go duration such as "20ms") to
	// every connection of the node. For tests and demos on machines without
	// netem; never set it in production.
	EnvNetDelay = "PHYSARUM_NET_DELAY"
	// EnvNetDelayCrossHost, when "1", limits EnvNetDelay to connections
	// between different IP addresses (see netdelay.NewCrossHost): for
	// demos that give each simulated site its own loopback address.
	EnvNetDelayCrossHost = "PHYSARUM_NET_DELAY_CROSS_HOST"
	// EnvFastTiming, when "1", shortens the discovery loops' periods for
	// local demos and tests where nodes come and go within seconds.
	EnvFastTiming = "PHYSARUM_FAST_TIMING"
)

// Defaults are per-binary flag defaults.
type Defaults struct {
	// PromListen is the default -prom-listen-addr ("" disables metrics).
	PromListen string
	// Listen is the default -listen (empty: /ip4/0.0.0.0/tcp/0).
	Listen []string
	// CLI leaves out what only daemons need: -listen, -addr-file and
	// -prom-listen-addr (a CLI dials out and exits).
	CLI bool
	// LogLevel is the default -log-level (default info).
	LogLevel string
	// DHTServer makes the node serve the DHT (registries); others are
	// clients of it (see p2p.Config.DHTClient).
	DHTServer bool
}

// Flags holds the shared flags' values after parsing.
type Flags struct {
	binary    string
	dhtClient bool

	PSK        string
	PSKFile    string
	Bootstraps []string
	Listen     []string
	AddrFile   string
	KeyFile    string
	Ephemeral  bool
	Algo       string
	Bits       int
	PromListen string
	PProf      bool
	LogLevel   string
	LogFormat  string
}

// Register adds the shared flags to fs for binary (which names its default
// key file) and returns where their values land.
func Register(fs *flag.FlagSet, binary string, d Defaults) *Flags {
	f := &Flags{binary: binary, dhtClient: !d.DHTServer}
	fs.StringVar(&f.PSK, "psk", "", "network passphrase; the PSK is derived from it (or env "+psk.EnvVar+"). Nodes with different passphrases cannot connect")
	fs.StringVar(&f.PSKFile, "psk-file", "", "file holding the network passphrase, or a libp2p swarm.key")
	fs.Func("bootstrap", "multiaddr of a peer to join through, with /p2p/<id>; repeatable (or env "+EnvBootstraps+", space-separated)", func(s string) error {
		f.Bootstraps = append(f.Bootstraps, s)
		return nil
	})
	if !d.CLI {
		fs.Func("listen", "TCP multiaddr to listen on; repeatable (default "+strings.Join(defaultListen(d), ", ")+")", func(s string) error {
			f.Listen = append(f.Listen, s)
			return nil
		})
		fs.StringVar(&f.AddrFile, "addr-file", "", "write this node's full multiaddrs to this file, one per line, once listening")
	}
	fs.StringVar(&f.KeyFile, "keyfile", keys.DefaultPath(binary), "private key file (created with mode 0600 when missing)")
	fs.BoolVar(&f.Ephemeral, "ephemeral", false, "use a new identity for this run only; -keyfile is ignored")
	fs.StringVar(&f.Algo, "algo", "Ed25519", "key algorithm for a new key: "+strings.Join(keys.Algorithms, ", "))
	fs.IntVar(&f.Bits, "bits", keys.MinRSABits, "key length in bits (RSA only)")
	if !d.CLI {
		fs.StringVar(&f.PromListen, "prom-listen-addr", d.PromListen, "host:port to serve Prometheus metrics on (\"\" disables)")
		fs.BoolVar(&f.PProf, "pprof", false, "also serve Go profiles under /debug/pprof/ on the metrics address (for diagnosis)")
	}
	level := d.LogLevel
	if level == "" {
		level = "info"
	}
	fs.StringVar(&f.LogLevel, "log-level", level, "log level: debug, info, warn or error")
	fs.StringVar(&f.LogFormat, "log-format", "text", "log format: text or json")
	return f
}

func defaultListen(d Defaults) []string {
	if len(d.Listen) > 0 {
		return d.Listen
	}
	return []string{"/ip4/0.0.0.0/tcp/0"}
}

// Validate checks what can be checked before anything starts (log level
// and format, key algorithm, addresses), so that a mistyped flag is a usage
// error. The PSK and key files are checked by Resolve.
func (f *Flags) Validate(getenv func(string) string) error {
	if _, err := logging.New(io.Discard, f.binary, f.LogLevel, f.LogFormat); err != nil {
		return fmt.Errorf("-log-level/-log-format: %w", err)
	}
	if _, err := keys.ParseAlgo(f.Algo); err != nil {
		return fmt.Errorf("-algo: %w", err)
	}
	for _, s := range f.Listen {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("-listen %q: %w", s, err)
		}
	}
	boots := f.Bootstraps
	if len(boots) == 0 {
		boots = strings.Fields(getenv(EnvBootstraps))
	}
	if _, err := ParseBootstraps(boots); err != nil {
		return err
	}
	return nil
}

// Logger builds the logger the flags ask for.
func (f *Flags) Logger(w io.Writer) (*slog.Logger, error) {
	return logging.New(w, f.binary, f.LogLevel, f.LogFormat)
}

// Resolve turns the flags and the environment (through getenv) into a
// p2p.Config: PSK, identity, bootstraps, listen addresses and test knobs.
// Logger and Registerer are left for the caller. created reports whether a
// new key file was written.
func (f *Flags) Resolve(getenv func(string) string) (cfg p2p.Config, created bool, err error) {
	cfg.PSK, err = psk.Resolve(psk.Source{Flag: f.PSK, File: f.PSKFile, Env: getenv(psk.EnvVar)})
	if err != nil {
		return cfg, false, err
	}
	cfg.Identity, created, err = f.identity()
	if err != nil {
		return cfg, false, err
	}
	boots := f.Bootstraps
	if len(boots) == 0 {
		boots = strings.Fields(getenv(EnvBootstraps))
	}
	if cfg.Bootstraps, err = ParseBootstraps(boots); err != nil {
		return cfg, false, err
	}
	for _, s := range f.Listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return cfg, false, fmt.Errorf("-listen %q: %w", s, err)
		}
		cfg.ListenAddrs = append(cfg.ListenAddrs, a)
	}
	if v := getenv(EnvNetDelay); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return cfg, false, fmt.Errorf("%s=%q: want a non-negative duration such as 20ms", EnvNetDelay, v)
		}
		if getenv(EnvNetDelayCrossHost) == "1" {
			cfg.Delay = netdelay.NewCrossHost(d)
		} else {
			cfg.Delay = netdelay.New(d)
		}
	}
	if getenv(EnvFastTiming) == "1" {
		cfg.Timing = p2p.FastTiming()
	}
	cfg.UserAgent = "physarum/" + f.binary
	cfg.DHTClient = f.dhtClient
	return cfg, created, cfg.Validate()
}

func (f *Flags) identity() (crypto.PrivKey, bool, error) {
	if _, err := keys.ParseAlgo(f.Algo); err != nil {
		return nil, false, fmt.Errorf("-algo: %w", err)
	}
	if f.Ephemeral {
		k, err := keys.Generate(f.Algo, f.Bits)
		return k, false, err
	}
	if f.KeyFile == "" {
		return nil, false, errors.New("no key file: give -keyfile PATH or -ephemeral (no user config directory to default to)")
	}
	return keys.LoadOrCreate(f.KeyFile, f.Algo, f.Bits)
}

// ParseBootstraps parses multiaddrs that each end in /p2p/<id>. Several
// addresses of one peer are merged into one AddrInfo.
func ParseBootstraps(addrs []string) ([]peer.AddrInfo, error) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap address %q: %w", s, err)
		}
		if _, err := a.ValueForProtocol(ma.P_P2P); err != nil {
			return nil, fmt.Errorf("bootstrap address %q has no /p2p/<peer-id> part", s)
		}
		mas = append(mas, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("bootstrap addresses: %w", err)
	}
	return infos, nil
}

// WriteAddrFile writes addrs, one per line, to path atomically, so a script
// polling for the file never reads half of it.
func WriteAddrFile(path string, addrs []ma.Multiaddr) error {
	var b strings.Builder
	for _, a := range addrs {
		b.WriteString(a.String())
		b.WriteByte('\n')
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	return nil
}
