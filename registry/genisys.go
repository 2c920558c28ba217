package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ConnectorService is a service in the format of seed 001's connector
// (name, image, command, environment, ports), with ServiceInfo's own
// fields accepted in the same object. It is what the HTTP API's /service
// endpoints read and write.
//
// The mapping: image is DockerHash; command is the container's Command
// when there is an image, else the process runtime's Exec (the first word
// the program, the rest its arguments) unless Exec is given; environment
// and ports are Environment and Ports.
type ConnectorService struct {
	Name string
	Info ServiceInfo
}

// connectorFields are seed 001's keys. Go's JSON decoder matches keys
// case-insensitively, so "environment" and "ports" also land in
// ServiceInfo's Environment and Ports: one meaning, one field.
type connectorFields struct {
	Name        string            `json:"name"`
	Image       string            `json:"image"`
	Command     *string           `json:"command"`
	Environment map[string]string `json:"environment"`
	Ports       []string          `json:"ports"`
}

// DecodeConnectorService reads a service in the connector format. name,
// when not empty, is the name from the URL (PUT /service/<name>): a body
// naming another service is refused. The result is validated.
func DecodeConnectorService(data []byte, name string) (ConnectorService, error) {
	var f connectorFields
	if err := strictJSON(data, &f); err != nil {
		return ConnectorService{}, err
	}
	var info ServiceInfo
	if err := strictJSON(data, &info); err != nil {
		return ConnectorService{}, err
	}
	switch {
	case name == "" && f.Name == "":
		return ConnectorService{}, invalid("name", "missing: a service needs a name")
	case name == "":
		name = f.Name
	case f.Name != "" && f.Name != name:
		return ConnectorService{}, invalid("name", "%q in the body, %q in the URL", f.Name, name)
	}
	if err := ValidateName(name); err != nil {
		return ConnectorService{}, err
	}
	if f.Image != "" {
		if info.DockerHash != "" && info.DockerHash != f.Image {
			return ConnectorService{}, invalid("image", "%q and DockerHash %q disagree", f.Image, info.DockerHash)
		}
		info.DockerHash = f.Image
	}
	// "command" also landed in info.Command (same key); it is the
	// container's only with an image.
	info.Command = ""
	if f.Command != nil && strings.TrimSpace(*f.Command) != "" {
		switch {
		case info.DockerHash != "":
			info.Command = *f.Command
		case info.Exec == nil:
			words := strings.Fields(*f.Command)
			info.Exec = &ExecConf{Command: words[0], Args: words[1:]}
		}
	}
	info.Environment, info.Ports = f.Environment, f.Ports
	if info.Exec == nil && info.DockerHash == "" {
		return ConnectorService{}, invalid("image", "missing: a service needs an image (Docker) or a command or Exec (process)")
	}
	if err := info.Validate(); err != nil {
		return ConnectorService{}, err
	}
	return ConnectorService{Name: name, Info: info}, nil
}

// strictJSON decodes one JSON object, refusing trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return invalid("body", "not a JSON object of the expected shape: %v", err)
	}
	// More() misses a stray closing bracket ("{...}}"): read on to the
	// end, which must be the input's.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("body", "more than one JSON value, or trailing data")
	}
	return nil
}

// MarshalJSON writes the connector's keys (command and environment null
// when unset, as seed 001 shows) and ServiceInfo's own.
func (s ConnectorService) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(s.Info)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "Command")
	delete(m, "Environment")
	delete(m, "Ports")
	m["name"] = s.Name
	m["image"] = s.Info.DockerHash
	m["command"] = nil
	switch {
	case s.Info.Command != "":
		m["command"] = s.Info.Command
	case s.Info.DockerHash == "" && s.Info.Exec != nil:
		m["command"] = strings.Join(append([]string{s.Info.Exec.Command}, s.Info.Exec.Args...), " ")
	}
	m["environment"] = nil
	if len(s.Info.Environment) > 0 {
		m["environment"] = s.Info.Environment
	}
	m["ports"] = nil
	if len(s.Info.Ports) > 0 {
		m["ports"] = s.Info.Ports
	}
	return json.Marshal(m)
}

// String names the service and its image or command, for logs.
func (s ConnectorService) String() string {
	if s.Info.DockerHash != "" {
		return fmt.Sprintf("%s (image %s)", s.Name, s.Info.DockerHash)
	}
	return s.Name
}
