// Package instenv is the environment contract between an allocator and
// the instances it starts (PhysarumSM's, extended): the variables the
// allocator sets and the proxy inside the instance reads.
package instenv

import (
	"encoding/hex"
	"os"
	"time"

	"github.com/physarum-p2p/physarum/common/nodeflags"
)

// Variables of the contract.
const (
	// Service is the service's name.
	Service = "PHYSARUM_SERVICE"
	// InstanceID is the instance's ID.
	InstanceID = "PHYSARUM_INSTANCE_ID"
	// ServicePort is the port the service must listen on (at ProxyIP).
	ServicePort = "SERVICE_PORT"
	// ProxyPort is the proxy's local HTTP port: the service reaches other
	// services through http://$PROXY_IP:$PROXY_PORT/<service>/...
	ProxyPort = "PROXY_PORT"
	// ProxyIP is the address the service and the proxy talk on.
	ProxyIP = "PROXY_IP"
	// P2PPort is the proxy's libp2p TCP port.
	P2PPort = "P2P_PORT"
	// P2PIP is the address the proxy's libp2p port listens on: the one the
	// allocator listens on when it has one, else all (0.0.0.0).
	P2PIP = "P2P_IP"
	// MetricsPort is the proxy's Prometheus port.
	MetricsPort = "METRICS_PORT"
	// Bootstraps are space-separated multiaddrs to join the network by.
	Bootstraps = nodeflags.EnvBootstraps
	// PSK is the network key, here in libp2p's swarm.key format (a
	// passphrase works too).
	PSK = "P2P_PSK"
	// ProxyKey is the proxy's private key (base64 of libp2p's encoding),
	// so its peer ID is known before it starts and stays across restarts.
	ProxyKey = "PROXY_KEY"
	// ProxyMode is ModeService or ModeClient.
	ProxyMode = "PROXY_MODE"
)

// Proxy modes.
const (
	ModeService = "service" // serves the instance and lets it call others
	ModeClient  = "client"  // only lets the instance call others
)

// PassThrough are the allocator's own variables handed on to its
// instances: test and demo knobs that must apply to the whole node.
var PassThrough = []string{nodeflags.EnvNetDelay, nodeflags.EnvNetDelayCrossHost, nodeflags.EnvFastTiming}

// EncodePSK writes a network key in libp2p's swarm.key format.
func EncodePSK(key []byte) string {
	return "/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(key)
}

// Expand replaces ${VAR} and $VAR in s from env; unknown variables expand
// to "", as in a shell.
func Expand(s string, env map[string]string) string {
	return os.Expand(s, func(k string) string { return env[k] })
}

// StatusPath is what an instance's proxy answers on its local port
// (PROXY_PORT) for the allocator: a Status as JSON, with 503 while the
// service does not accept connections.
const StatusPath = "/.physarum/status"

// Status is what an instance's proxy reports at StatusPath: whether the
// service answers, when it last served (for idle culling), and how much it
// serves (for load reports).
type Status struct {
	// Ready means the service accepts connections on its port (a
	// client-mode instance is ready as soon as it runs).
	Ready bool `json:"ready"`
	// LastRequest is when the proxy last served a request to the service.
	LastRequest time.Time `json:"last_request"`
	// InFlight is how many requests the service is serving now.
	InFlight int `json:"in_flight"`
	// Requests is how many requests the proxy has forwarded to the service
	// since the proxy started: it only grows, until the proxy restarts and
	// it starts again from 0. Readers take rates from its differences.
	Requests uint64 `json:"requests"`
}
