package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/physarum-p2p/physarum/registry"
)

// maxConfigSize bounds a service config file; real ones are a few hundred
// bytes.
const maxConfigSize = 1 << 20

// serviceConfig is the file given to add: requirements plus how to run the
// service, either DockerConf (an image to build) or Exec (a process).
type serviceConfig struct {
	NetworkSoftReq registry.PerfInd   `json:"NetworkSoftReq"`
	NetworkHardReq registry.PerfInd   `json:"NetworkHardReq"`
	CpuReq         int                `json:"CpuReq"`
	MemoryReq      int                `json:"MemoryReq"`
	ContentHash    string             `json:"ContentHash,omitempty"`
	Exec           *registry.ExecConf `json:"Exec,omitempty"`
	DockerConf     json.RawMessage    `json:"DockerConf,omitempty"`
	// ProxyClientMode runs the instance's proxy in client mode: the
	// service calls others and serves nothing (DockerConf has its own).
	ProxyClientMode bool `json:"ProxyClientMode,omitempty"`
}

// loadConfig reads and checks a service config file.
func loadConfig(path string) (*serviceConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config file %s: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("config file %s is larger than %d bytes", path, maxConfigSize)
	}
	c, err := parseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// parseConfig decodes a config, refusing unknown fields (a typo must not
// silently drop a requirement) and checking what the registry would.
func parseConfig(b []byte) (*serviceConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c serviceConfig
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("malformed JSON: more than one value")
	}
	hasDocker := len(c.DockerConf) > 0 && string(c.DockerConf) != "null"
	switch {
	case hasDocker && c.Exec != nil:
		return nil, errors.New("give DockerConf or Exec, not both")
	case !hasDocker && c.Exec == nil:
		return nil, errors.New("no DockerConf or Exec: say how to run the service")
	}
	info := c.info()
	if c.Exec == nil {
		info.DockerHash = "pending" // built later; checked here for the requirements
	}
	if err := info.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *serviceConfig) isDocker() bool { return c.Exec == nil }

// info is the ServiceInfo the config describes (without an image).
func (c *serviceConfig) info() registry.ServiceInfo {
	return registry.ServiceInfo{
		ContentHash:     c.ContentHash,
		Exec:            c.Exec,
		NetworkSoftReq:  c.NetworkSoftReq,
		NetworkHardReq:  c.NetworkHardReq,
		CpuReq:          c.CpuReq,
		MemoryReq:       c.MemoryReq,
		ProxyClientMode: c.ProxyClientMode,
	}
}
