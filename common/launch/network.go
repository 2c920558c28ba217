package launch

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/physarum-p2p/physarum/common/freeport"
)

// Lines the daemons print on stdout once they serve.
const (
	RegistryReady  = "registry ready"
	AllocatorReady = "allocator ready"
	ProxyReady     = "proxy ready"
)

// Node holds the flags every daemon of a local network takes. The zero
// value is a node with a new identity each start, listening on loopback,
// without metrics, reading its PSK and bootstrap peers from the
// environment (P2P_PSK, P2P_BOOTSTRAPS).
type Node struct {
	// KeyFile holds its identity ("": a new one each start, -ephemeral).
	KeyFile string
	// PSK is the network's passphrase, given with -psk ("": from the
	// environment).
	PSK string
	// IP and Port are where it listens for peers ("" and 0: 127.0.0.1 and
	// any port).
	IP   string
	Port int
	// Bootstrap is the address of a peer to join through ("": from the
	// environment).
	Bootstrap string
	// AddrFile, when set, is where it writes its address once it listens
	// (Proc.Ready reads it).
	AddrFile string
	// Metrics is its -prom-listen-addr ("": no metrics endpoint).
	Metrics string
	// LogLevel is its -log-level ("": the default).
	LogLevel string
}

func (n Node) args() []string {
	var a []string
	if n.KeyFile == "" {
		a = append(a, "-ephemeral")
	} else {
		a = append(a, "-keyfile", n.KeyFile)
	}
	if n.PSK != "" {
		a = append(a, "-psk", n.PSK)
	}
	ip := n.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	a = append(a, "-listen", "/ip4/"+ip+"/tcp/"+strconv.Itoa(n.Port))
	if n.Bootstrap != "" {
		a = append(a, "-bootstrap", n.Bootstrap)
	}
	if n.AddrFile != "" {
		a = append(a, "-addr-file", n.AddrFile)
	}
	a = append(a, "-prom-listen-addr", n.Metrics)
	if n.LogLevel != "" {
		a = append(a, "-log-level", n.LogLevel)
	}
	return a
}

// Registry is how to start a registry-service: the first of a network,
// which starts a new etcd cluster, or, with Node.Bootstrap set, one that
// joins the cluster of the registry there.
type Registry struct {
	Node
	// DataDir holds its etcd member's data.
	DataDir string
	// ClientPort and PeerPort are its etcd ports (0: Args picks a free
	// one and records it here).
	ClientPort, PeerPort int
	// UnsafeNoFsync skips etcd's fsyncs (tests).
	UnsafeNoFsync bool
	// APIListen is its HTTP API's -api-listen ("": Args picks a free
	// loopback port and records it here, so that several registries run
	// on one machine).
	APIListen string
	// Extra flags come last.
	Extra []string
}

// APIURL is the base URL of the registry's HTTP API (after Args).
func (r *Registry) APIURL() string { return "http://" + r.APIListen }

// Args returns the registry-service command line.
func (r *Registry) Args() []string {
	if r.APIListen == "" {
		r.APIListen = "127.0.0.1:" + strconv.Itoa(freeport.One("127.0.0.1"))
	}
	if r.ClientPort == 0 {
		r.ClientPort = freeport.One("127.0.0.1")
	}
	if r.PeerPort == 0 {
		r.PeerPort = freeport.One("127.0.0.1")
	}
	a := r.Node.args()
	if r.Bootstrap == "" {
		a = append(a, "-new-etcd-cluster")
	}
	a = append(a, "-data-dir", r.DataDir,
		"-etcd-client-port", strconv.Itoa(r.ClientPort), "-etcd-peer-port", strconv.Itoa(r.PeerPort),
		"-api-listen", r.APIListen)
	if r.UnsafeNoFsync {
		a = append(a, "-unsafe-no-fsync")
	}
	return append(a, r.Extra...)
}

// Allocator is how to start an allocator.
type Allocator struct {
	Node
	// Name is its -name, unique among the live allocators of a network
	// ("": one unique on this machine, "alloc-<pid>-<n>", as the host
	// name, the allocator's default, is the same for all of them).
	Name string
	// DataDir holds its state and its instances' files.
	DataDir string
	// Runtime is its -runtime: process, docker or auto ("": the default).
	Runtime string
	// CPUs (cores, "0.5" allowed) and MemoryMiB are what it offers ("" and
	// 0: the host's).
	CPUs      string
	MemoryMiB int
	// Labels are its comma-separated key=value labels.
	Labels string
	// Proxy is the proxy binary it runs beside each instance ("": the
	// default).
	Proxy string
	// IdleTimeout and LeaseTTL are its -idle-timeout and -lease-ttl (0:
	// the defaults).
	IdleTimeout, LeaseTTL time.Duration
	// Extra flags come last.
	Extra []string
}

// allocators counts the allocators this process made a name for.
var allocators atomic.Int64

// Args returns the allocator command line. Each call without a Name
// makes a new one: keep the line to start the same allocator again.
func (al Allocator) Args() []string {
	name := al.Name
	if name == "" {
		name = fmt.Sprintf("alloc-%d-%d", os.Getpid(), allocators.Add(1))
	}
	a := append(al.Node.args(), "-name", name, "-data-dir", al.DataDir)
	if al.Runtime != "" {
		a = append(a, "-runtime", al.Runtime)
	}
	if al.CPUs != "" {
		a = append(a, "-cpus", al.CPUs)
	}
	if al.MemoryMiB != 0 {
		a = append(a, "-memory", strconv.Itoa(al.MemoryMiB))
	}
	if al.Labels != "" {
		a = append(a, "-labels", al.Labels)
	}
	if al.Proxy != "" {
		a = append(a, "-proxy", al.Proxy)
	}
	if al.IdleTimeout != 0 {
		a = append(a, "-idle-timeout", al.IdleTimeout.String())
	}
	if al.LeaseTTL != 0 {
		a = append(a, "-lease-ttl", al.LeaseTTL.String())
	}
	return append(a, al.Extra...)
}

// ClientProxy is how to start a proxy in client mode.
type ClientProxy struct {
	Node
	// HTTPPort is the local port it serves clients on (0: any).
	HTTPPort int
	// Extra flags come before the port.
	Extra []string
}

// Args returns the proxy command line.
func (c ClientProxy) Args() []string {
	a := append(c.Node.args(), c.Extra...)
	return append(a, strconv.Itoa(c.HTTPPort))
}
