package agent

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/allocator/runtime"
	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/registry"
)

// Labels the allocator adds to every instance, beyond the runtime's own:
// what it needs to adopt the instance after a restart.
const (
	labelOnDemand = "physarum.ondemand"
	labelCPU      = "physarum.cpu"
	labelMemory   = "physarum.memory"
	labelPorts    = "physarum.ports"
	labelPeer     = "physarum.peer"
	labelStarted  = "physarum.started"
	labelRuntime  = "physarum.runtime"
	// labelCompute is the compute a pinned instance counts towards (set
	// only for those), so that it still does once adopted.
	labelCompute = "physarum.compute"
	// labelVersion is the version of the service's definition the
	// instance was started from (registry.Instance.Version), so that it
	// keeps it once adopted, whatever the service's version is by then.
	labelVersion = "physarum.version"
)

// startReq is what a new instance is started as.
type startReq struct {
	id, service string
	// compute is the compute whose desired count the instance counts
	// towards ("" for on-demand and explicitly deployed instances).
	compute  string
	onDemand bool
}

// What an instance's proxy may use beyond the service's requirements. The
// proxy starts a libp2p host (a burst of CPU) and holds ~20-40 MiB; limits
// of exactly the service's requirements would throttle it to a crawl or
// kill it.
const (
	ProxyCPUAllowance    = 1000 // millicores
	ProxyMemoryAllowance = 64   // MiB
)

// limit is an instance's limit for a requirement: the requirement plus
// the proxy's allowance, or none (0) when the service states none.
func limit(req, allowance int) int {
	if req <= 0 {
		return 0
	}
	return req + allowance
}

// instanceEnv is the environment contract of an instance (see
// common/instenv): ports, identity, network access, and the test knobs
// the allocator itself runs with.
func (a *Agent) instanceEnv(id, service string, info *registry.ServiceInfo, p ports, key crypto.PrivKey) (map[string]string, error) {
	kb, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, err
	}
	// The allocator itself, and what it bootstrapped from (a registry,
	// usually): an instance's proxy is a DHT client and needs a server.
	var boots []string
	for _, m := range a.node.Addrs() {
		boots = append(boots, m.String())
	}
	for _, ai := range a.node.Config().Bootstraps {
		if addrs, err := peer.AddrInfoToP2pAddrs(&ai); err == nil {
			for _, m := range addrs {
				boots = append(boots, m.String())
			}
		}
	}
	mode := instenv.ModeService
	if info.ProxyClientMode {
		mode = instenv.ModeClient
	}
	env := map[string]string{
		instenv.Service:     service,
		instenv.InstanceID:  id,
		instenv.ServicePort: strconv.Itoa(p.Service),
		instenv.ProxyPort:   strconv.Itoa(p.Proxy),
		instenv.ProxyIP:     "127.0.0.1",
		instenv.P2PPort:     strconv.Itoa(p.P2P),
		instenv.P2PIP:       a.listenIP(),
		instenv.MetricsPort: strconv.Itoa(p.Metrics),
		instenv.Bootstraps:  strings.Join(boots, " "),
		instenv.PSK:         instenv.EncodePSK(a.node.PSK()),
		instenv.ProxyKey:    base64.StdEncoding.EncodeToString(kb),
		instenv.ProxyMode:   mode,
	}
	for _, k := range instenv.PassThrough {
		if v := os.Getenv(k); v != "" {
			env[k] = v
		}
	}
	return env, nil
}

// runtimeSpec builds what the runtime runs: for the process runtime the
// proxy with the service's command as its child; for Docker the image,
// whose entrypoint is the proxy, with the service's Command as its Cmd.
//
// The environment is, from weakest to strongest: the service's
// Environment (both runtimes, values as they are), its Exec.Env (process
// runtime, "${VAR}" expanded from the instance's environment), and the
// instance contract's own variables (common/instenv), which nothing
// overrides.
func (a *Agent) runtimeSpec(rtName string, sr startReq, info *registry.ServiceInfo, p ports, key crypto.PrivKey, peerID string) (runtime.Spec, error) {
	env, err := a.instanceEnv(sr.id, sr.service, info, p, key)
	if err != nil {
		return runtime.Spec{}, err
	}
	reserved := make(map[string]bool, len(env))
	for k := range env {
		reserved[k] = true
	}
	for k, v := range info.Environment {
		if !reserved[k] {
			env[k] = v
		}
	}
	// The container holds the proxy too: its limits are the service's
	// requirements plus the proxy's allowance, and the service's CPU
	// requirement is what it is guaranteed under contention (its shares).
	spec := runtime.Spec{
		ID: sr.id, Env: env, MaxRestarts: a.cfg.MaxRestarts,
		CPU: limit(info.CpuReq, ProxyCPUAllowance), CPURequest: info.CpuReq, Memory: limit(info.MemoryReq, ProxyMemoryAllowance),
		Labels: map[string]string{
			runtime.LabelService: sr.service,
			labelOnDemand:        strconv.FormatBool(sr.onDemand),
			labelCPU:             strconv.Itoa(info.CpuReq),
			labelMemory:          strconv.Itoa(info.MemoryReq),
			labelPorts:           p.String(),
			labelPeer:            peerID,
			labelStarted:         time.Now().UTC().Format(time.RFC3339Nano),
			labelRuntime:         rtName,
		},
	}
	if sr.compute != "" {
		spec.Labels[labelCompute] = sr.compute
	}
	if info.Version > 0 {
		spec.Labels[labelVersion] = strconv.Itoa(info.Version)
	}
	switch rtName {
	case registry.RuntimeDocker:
		spec.Image = info.DockerHash
		// The image's entrypoint (the proxy) stays; it runs these words
		// as the service.
		spec.Command = strings.Fields(info.Command)
	case registry.RuntimeProcess:
		if a.cfg.ProxyPath == "" {
			return runtime.Spec{}, fmt.Errorf("no proxy binary to run process instances with (see -proxy)")
		}
		// Env values are expanded here; Args by the proxy, which does the
		// same for a Docker image's CMD.
		for k, v := range info.Exec.Env {
			if !reserved[k] {
				env[k] = instenv.Expand(v, env)
			}
		}
		command, err := resolveCommand(info.Exec.Command)
		if err != nil {
			return runtime.Spec{}, err
		}
		spec.Command = append([]string{a.cfg.ProxyPath, "-instance", "--", command}, info.Exec.Args...)
	default:
		return runtime.Spec{}, fmt.Errorf("unknown runtime %q", rtName)
	}
	return spec, nil
}

// errCommandNotFound: a process service's command is not on this node.
var errCommandNotFound = errors.New("command not found on this node")

// resolveCommand finds a process service's command as a shell would: a
// bare name on the allocator's PATH (as Nomad's raw_exec does), a path as
// it is. Finding it here, and not in the instance, makes a missing
// command one clear failure instead of a crash loop of the instance.
func resolveCommand(command string) (string, error) {
	if strings.Contains(command, "/") {
		if _, err := os.Stat(command); err != nil {
			return "", fmt.Errorf("%w: %s: %w", errCommandNotFound, command, err)
		}
		return command, nil
	}
	path, err := exec.LookPath(command)
	if err != nil {
		return "", fmt.Errorf("%w: %q is not on the allocator's PATH (%s)", errCommandNotFound, command, os.Getenv("PATH"))
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, nil
}

// listenIP is the one IPv4 address this node listens on, which its
// instances then listen on too, or 0.0.0.0 when it listens on several (or
// on all).
func (a *Agent) listenIP() string {
	ip := ""
	for _, m := range a.node.Host().Network().ListenAddresses() {
		v, err := m.ValueForProtocol(ma.P_IP4)
		if err != nil || v == "0.0.0.0" || (ip != "" && ip != v) {
			return "0.0.0.0"
		}
		ip = v
	}
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}
