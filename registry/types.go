package registry

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/common/rtt"
)

// PerfInd is a latency requirement or measurement; RTT is in milliseconds.
type PerfInd = rtt.PerfInd

// ServiceInfo is what the registry stores for each service: how to run it
// and what it needs. JSON field names follow the PhysarumSM registry.
type ServiceInfo struct {
	// ContentHash identifies the service's artifact (image digest or a
	// configured id).
	ContentHash string `json:"ContentHash,omitempty"`
	// DockerHash is the image reference (name@sha256:... or a local tag)
	// for the Docker runtime.
	DockerHash string `json:"DockerHash,omitempty"`
	// Exec is the command for the process runtime.
	Exec *ExecConf `json:"Exec,omitempty"`
	// NetworkSoftReq is the RTT (ms) within which instances are preferred.
	NetworkSoftReq PerfInd `json:"NetworkSoftReq"`
	// NetworkHardReq is the RTT (ms) beyond which an instance is not used;
	// 0 means no limit.
	NetworkHardReq PerfInd `json:"NetworkHardReq"`
	// CpuReq is CPU in millicores (1000 = one core).
	CpuReq int `json:"CpuReq"`
	// MemoryReq is memory in MiB.
	MemoryReq int `json:"MemoryReq"`
	// Command is the Docker runtime's command for the container (its
	// Cmd, split on spaces; the image's entrypoint stays): seed 001's
	// "command".
	Command string `json:"Command,omitempty"`
	// Environment is added to every instance's environment, under either
	// runtime (Exec.Env, for processes, wins where both name a variable):
	// seed 001's "environment".
	Environment map[string]string `json:"Environment,omitempty"`
	// Ports are the ports a seed 001 definition names. Physarum reaches
	// an instance through its proxy, on the port it gives the service in
	// SERVICE_PORT, so they are kept and shown, never published on the
	// host.
	Ports []string `json:"Ports,omitempty"`
	// ProxyClientMode marks a service whose proxy runs in client mode only
	// (the service calls others but serves no requests itself).
	ProxyClientMode bool `json:"ProxyClientMode,omitempty"`
	// Version is the definition's version, set by the registry: 1 when
	// the service is first registered, one more each time a definition
	// that differs is registered (see ServiceVersion). It is ignored on
	// input: registering a definition never chooses its version, and a
	// definition read back and registered again, Version and all, is
	// unchanged.
	Version int `json:"Version,omitempty"`
}

// ExecConf is how the process runtime starts a service: Command with Args
// and Env. "${VAR}" in Args and Env values is expanded from the instance's
// environment (SERVICE_PORT, PROXY_PORT, ...).
type ExecConf struct {
	Command string            `json:"Command"`
	Args    []string          `json:"Args,omitempty"`
	Env     map[string]string `json:"Env,omitempty"`
}

// Limits on what a ServiceInfo may say. RTTs above MaxRTT are almost
// certainly seconds or nanoseconds given where milliseconds are expected.
const (
	MaxNameLen  = 63
	MaxRTT      = 60000   // ms
	MaxCPU      = 1000000 // millicores (1000 cores)
	MaxMemory   = 1 << 24 // MiB (16 TiB)
	MaxArgs     = 256
	MaxEnv      = 256
	MaxFieldLen = 4096
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$`)

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("invalid")

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// ValidateName checks a service name: 1 to 63 characters of lower-case
// letters, digits, '.', '_' and '-', starting and ending with a letter or
// digit (it becomes a key, a URL path segment and a container label).
func ValidateName(name string) error {
	if name == "" {
		return invalid("service name", "empty")
	}
	if len(name) > MaxNameLen {
		return invalid("service name", "%d characters (at most %d)", len(name), MaxNameLen)
	}
	if !nameRE.MatchString(name) {
		return invalid("service name", "%q: use lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// Validate checks everything the registry relies on; each failure names
// the field.
func (s *ServiceInfo) Validate() error {
	if err := validateRTT("NetworkSoftReq.RTT", s.NetworkSoftReq.RTT); err != nil {
		return err
	}
	if err := validateRTT("NetworkHardReq.RTT", s.NetworkHardReq.RTT); err != nil {
		return err
	}
	if s.NetworkHardReq.RTT > 0 && s.NetworkSoftReq.RTT > s.NetworkHardReq.RTT {
		return invalid("NetworkSoftReq.RTT", "%g ms is above NetworkHardReq.RTT (%g ms); soft must be <= hard", s.NetworkSoftReq.RTT, s.NetworkHardReq.RTT)
	}
	if s.CpuReq < 0 || s.CpuReq > MaxCPU {
		return invalid("CpuReq", "%d millicores (want 0 to %d)", s.CpuReq, MaxCPU)
	}
	if s.MemoryReq < 0 || s.MemoryReq > MaxMemory {
		return invalid("MemoryReq", "%d MiB (want 0 to %d)", s.MemoryReq, MaxMemory)
	}
	if s.Exec == nil && s.DockerHash == "" {
		return invalid("Exec", "a service needs Exec (process runtime) or DockerHash (Docker runtime)")
	}
	if len(s.DockerHash) > MaxFieldLen || len(s.ContentHash) > MaxFieldLen {
		return invalid("DockerHash", "longer than %d characters", MaxFieldLen)
	}
	if len(s.Command) > MaxFieldLen {
		return invalid("Command", "longer than %d characters", MaxFieldLen)
	}
	if err := validateEnv("Environment", s.Environment); err != nil {
		return err
	}
	if len(s.Ports) > MaxArgs {
		return invalid("Ports", "%d ports (at most %d)", len(s.Ports), MaxArgs)
	}
	for i, p := range s.Ports {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return invalid(fmt.Sprintf("Ports[%d]", i), "%q is not a port number (1 to 65535)", p)
		}
	}
	if s.Exec != nil {
		return s.Exec.Validate()
	}
	return nil
}

func validateRTT(field string, v float64) error {
	switch {
	case v != v: // NaN
		return invalid(field, "not a number")
	case v < 0:
		return invalid(field, "%g ms is negative", v)
	case v > MaxRTT:
		return invalid(field, "%g ms is above %d ms; RTTs are in milliseconds", v, MaxRTT)
	}
	return nil
}

// Validate checks an ExecConf.
func (e *ExecConf) Validate() error {
	if strings.TrimSpace(e.Command) == "" {
		return invalid("Exec.Command", "empty")
	}
	if len(e.Command) > MaxFieldLen {
		return invalid("Exec.Command", "longer than %d characters", MaxFieldLen)
	}
	if len(e.Args) > MaxArgs {
		return invalid("Exec.Args", "%d arguments (at most %d)", len(e.Args), MaxArgs)
	}
	for i, a := range e.Args {
		if len(a) > MaxFieldLen {
			return invalid(fmt.Sprintf("Exec.Args[%d]", i), "longer than %d characters", MaxFieldLen)
		}
	}
	return validateEnv("Exec.Env", e.Env)
}

func validateEnv(field string, env map[string]string) error {
	if len(env) > MaxEnv {
		return invalid(field, "%d variables (at most %d)", len(env), MaxEnv)
	}
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return invalid(field, "variable name %q", k)
		}
		if len(v) > MaxFieldLen {
			return invalid(field+"."+k, "longer than %d characters", MaxFieldLen)
		}
	}
	return nil
}

// Runtimes an instance can run under.
const (
	RuntimeDocker  = "docker"
	RuntimeProcess = "process"
)

// Runtime returns the runtimes that can run s, preferred first.
func (s *ServiceInfo) Runtimes() []string {
	var out []string
	if s.DockerHash != "" {
		out = append(out, RuntimeDocker)
	}
	if s.Exec != nil {
		out = append(out, RuntimeProcess)
	}
	return out
}

// Instance states, in lifecycle order.
const (
	StatePending  = "pending"
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
	StateStopped  = "stopped"
	StateFailed   = "failed"
)

// Instance is the registry's record of one running (or failed) instance.
// Allocators write it under their node's lease, so it disappears with a
// node that dies.
type Instance struct {
	// ID is unique in the network (allocator-assigned).
	ID string `json:"ID"`
	// Service is the service's name.
	Service string `json:"Service"`
	// Node is the peer ID of the allocator that runs it.
	Node string `json:"Node"`
	// State is one of the State* constants.
	State string `json:"State"`
	// Runtime is RuntimeDocker or RuntimeProcess.
	Runtime string `json:"Runtime"`
	// PeerID is the libp2p identity of the instance's proxy; requests reach
	// the instance through it.
	PeerID string `json:"PeerID"`
	// Addrs are the proxy's multiaddrs.
	Addrs []string `json:"Addrs"`
	// Host is the IP address the instance's ports listen on (0.0.0.0:
	// all of the node's).
	Host string `json:"Host,omitempty"`
	// Ports are the instance's ports on that host.
	Ports *InstancePorts `json:"Ports,omitempty"`
	// OnDemand instances were started for a request and are culled when idle.
	OnDemand bool `json:"OnDemand"`
	// Compute is the compute whose desired count the instance counts
	// towards: set for instances the reconciler starts ("pinned"), empty
	// for on-demand ones and those started by an explicit deploy.
	Compute string `json:"Compute,omitempty"`
	// Version is the version of the service's definition the instance was
	// started from (ServiceInfo.Version); 0 when unknown (an instance
	// started by an allocator older than versions).
	Version int `json:"Version,omitempty"`
	// Started is when the instance was started.
	Started time.Time `json:"Started"`
	// Restarts counts restarts after crashes.
	Restarts int `json:"Restarts,omitempty"`
	// Message says why the instance failed, when it did.
	Message string `json:"Message,omitempty"`
}

// InstancePorts are an instance's ports (SERVICE_PORT, PROXY_PORT, its
// proxy's libp2p port, METRICS_PORT).
type InstancePorts struct {
	Service int `json:"Service"`
	Proxy   int `json:"Proxy"`
	P2P     int `json:"P2P"`
	Metrics int `json:"Metrics"`
}

// Node is an allocator's record: what it offers and what is still free.
type Node struct {
	// PeerID is the allocator's libp2p identity.
	PeerID string `json:"PeerID"`
	// Addrs are the allocator's multiaddrs.
	Addrs []string `json:"Addrs"`
	// Runtimes lists the runtimes that work on this node now.
	Runtimes []string `json:"Runtimes"`
	// Labels are operator-given key=value tags.
	Labels map[string]string `json:"Labels,omitempty"`
	// CPU and Memory are the capacity offered (millicores, MiB).
	CPU    int `json:"CPU"`
	Memory int `json:"Memory"`
	// FreeCPU and FreeMemory are what admitted instances leave.
	FreeCPU    int `json:"FreeCPU"`
	FreeMemory int `json:"FreeMemory"`
	// Name is the allocator's -name: unique in the network, and the name
	// of the compute made of this node alone.
	Name string `json:"Name,omitempty"`
	// Instances counts instances on the node.
	Instances int `json:"Instances"`
	// Updated is when the record last changed (heartbeats that change
	// nothing only renew the lease).
	Updated time.Time `json:"Updated"`
	// Message explains a degraded node (e.g. "docker unreachable").
	Message string `json:"Message,omitempty"`
	// Images are the IDs of the registered services' images this node's
	// Docker daemon holds (sorted): placement prefers a node that need not
	// fetch the image first.
	Images []string `json:"Images,omitempty"`
	// Load is what the node's running instances serve, measured by the
	// allocator over the last LoadWindow and sent with every heartbeat
	// (each third of the lease): one entry per running instance, sorted by
	// ID, at most MaxNodeLoad of them (the busiest first when there are
	// more). Figures are rounded, and move only by a whole step, so that a
	// node whose load holds still does not change its record.
	Load []InstanceLoad `json:"Load,omitempty"`
	// RTTs are the allocator's smoothed round-trip times to the other
	// allocators it knows (from the registry's node list), measured with
	// libp2p ping (up to 16 peers a heartbeat, in turn) and sent with every
	// heartbeat (each third of the lease): nearest first, at most
	// MaxNodeRTTs of them. Values are rounded to 0.1 ms and move only when
	// the measure is more than RTTStep, and more than RTTStepRatio, away
	// from what was last published (and more than the measure's own
	// jitter), so that a quiet network's records hold still. A peer that
	// fails three pings in a row drops out.
	RTTs []PeerRTT `json:"RTTs,omitempty"`
}

// Brief is n without what the node measures and holds (Load, RTTs,
// Images): who it is, where, and what it offers, in about a tenth of the
// bytes of a busy node's whole record.
func (n Node) Brief() Node {
	n.Load, n.RTTs, n.Images = nil, nil, nil
	return n
}

// MaxNodeRTTs bounds the entries of Node.RTTs (about 77 bytes an entry,
// so about 2.5 KB at most): a node that knows more allocators publishes
// the MaxNodeRTTs nearest.
const MaxNodeRTTs = 32

// A published RTT (Node.RTTs) moves only when the measure is more than
// RTTStep milliseconds, and more than RTTStepRatio of the published
// value, away from it: 0.5 ms near by, 10 % far away, where jitter is
// larger. (The allocator also holds it within four times the measure's
// mean deviation from round to round.)
const (
	RTTStep      = 0.5 // ms
	RTTStepRatio = 0.1
)

// PeerRTT is a node's round-trip time to another allocator, as the node
// publishes it (Node.RTTs).
type PeerRTT struct {
	// PeerID is the other allocator's libp2p identity (its node record's
	// PeerID).
	PeerID string `json:"PeerID"`
	// RTT is the smoothed round-trip time in milliseconds, to 0.1.
	RTT float64 `json:"RTT"`
}

// LoadWindow is the time over which an allocator measures the load it
// publishes in its node record.
const LoadWindow = 5 * time.Second

// MaxNodeLoad bounds the entries of Node.Load, and with it the node
// record (about 75 bytes an entry, so about 10 KB at most): a node running
// more instances publishes the MaxNodeLoad that serve the most requests.
const MaxNodeLoad = 128

// InstanceLoad is the load of one running instance, as its node publishes
// it (Node.Load).
type InstanceLoad struct {
	// ID and Service name the instance.
	ID      string `json:"ID"`
	Service string `json:"Service"`
	// RPS is the requests per second its proxy forwarded to it over the
	// window, to 0.1.
	RPS float64 `json:"RPS"`
	// InFlight is the requests it was serving at the last poll.
	InFlight int `json:"InFlight"`
	// CPU is the CPU time it used over the window, in percent of one
	// core (to 1 %; above 100 on several cores), as its runtime counts
	// it: nil when the runtime cannot say.
	CPU *float64 `json:"CPU,omitempty"`
}
