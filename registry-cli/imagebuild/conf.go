package imagebuild

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DockerConf is the DockerConf object of a registry-cli add config: how to
// build the service's image. JSON field names follow seed 004.
type DockerConf struct {
	// From is the base image: "scratch" for a static binary, or an image
	// already present on the Docker host (nothing is ever pulled).
	// Required.
	From string `json:"From"`
	// Copy lists [src, dst] pairs. src is a file or directory relative to
	// the build directory (-dir); directories are copied recursively. dst
	// is relative to /app, the image's working directory, or absolute.
	Copy [][2]string `json:"Copy,omitempty"`
	// Run lists commands run at build time with /bin/sh -c, one RUN each.
	// A FROM scratch image has no shell, so Run must be empty there.
	Run []string `json:"Run,omitempty"`
	// Cmd is the service's command line, split into argv by SplitCommand.
	// The proxy is the image's entrypoint and runs it as its child: no
	// shell is involved. Required.
	Cmd string `json:"Cmd"`
	// ProxyClientMode marks a service whose proxy only makes requests
	// (client mode). The image carries it as a label.
	ProxyClientMode bool `json:"ProxyClientMode,omitempty"`
	// Env sets variables in the image (ENV), beside the instance
	// contract's. The allocator's values of the contract's variables win at
	// run time.
	Env map[string]string `json:"Env,omitempty"`
	// ProxyCmd, when set, replaces the image's entrypoint (the proxy in
	// instance mode): registry-cli add -proxy-cmd. It is split like Cmd,
	// and must still run the proxy, with "-instance --" for the service
	// to be its child. Not part of the JSON config.
	ProxyCmd string `json:"-"`
}

// Limits on a DockerConf.
const (
	MaxCopy     = 256
	MaxRun      = 256
	MaxFieldLen = 4096
)

// scratch is Docker's reserved name for the empty base image.
const scratch = "scratch"

func (c DockerConf) isScratch() bool { return strings.EqualFold(c.From, scratch) }

// strictConf is DockerConf as it is decoded: Copy as [][]string, so that a
// pair with one or three elements is refused instead of silently padded or
// truncated.
type strictConf struct {
	From            string            `json:"From"`
	Copy            [][]string        `json:"Copy"`
	Run             []string          `json:"Run"`
	Cmd             string            `json:"Cmd"`
	ProxyClientMode bool              `json:"ProxyClientMode"`
	Env             map[string]string `json:"Env"`
}

// UnmarshalJSON decodes a DockerConf strictly: unknown fields and Copy
// entries that are not [src, dst] pairs are errors. It does not validate
// the values; Validate does.
func (c *DockerConf) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s strictConf
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("%w in DockerConf", err)
	}
	conf := DockerConf{From: s.From, Run: s.Run, Cmd: s.Cmd, ProxyClientMode: s.ProxyClientMode, Env: s.Env}
	for i, pair := range s.Copy {
		if len(pair) != 2 {
			return invalid(fmt.Sprintf("Copy[%d]", i), "want a [\"src\", \"dst\"] pair, got %d strings", len(pair))
		}
		conf.Copy = append(conf.Copy, [2]string{pair[0], pair[1]})
	}
	*c = conf
	return nil
}

// ParseDockerConf decodes a DockerConf JSON object strictly (see
// UnmarshalJSON), refuses anything after it, and validates it.
func ParseDockerConf(data []byte) (DockerConf, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var c DockerConf
	if err := dec.Decode(&c); err != nil {
		return DockerConf{}, fmt.Errorf("parse DockerConf: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return DockerConf{}, fmt.Errorf("parse DockerConf: unexpected data after the object")
	}
	if err := Validate(c); err != nil {
		return DockerConf{}, err
	}
	return c, nil
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w DockerConf.%s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// Validate checks everything Dockerfile and Build rely on. Each refusal
// wraps ErrInvalid and names the field, e.g. "invalid DockerConf.From:
// missing; ...". It does not look at the file system: Build checks that the
// Copy sources exist.
func Validate(c DockerConf) error {
	if err := validateFrom(c.From); err != nil {
		return err
	}
	if len(c.Copy) > MaxCopy {
		return invalid("Copy", "%d entries (at most %d)", len(c.Copy), MaxCopy)
	}
	for i, pair := range c.Copy {
		if err := validateCopy(i, pair); err != nil {
			return err
		}
	}
	if len(c.Run) > MaxRun {
		return invalid("Run", "%d entries (at most %d)", len(c.Run), MaxRun)
	}
	if len(c.Run) > 0 && c.isScratch() {
		return invalid("Run", "a FROM scratch image has no shell to run commands in; build static binaries beforehand and list them in Copy, or use a base image that is present locally")
	}
	for i, r := range c.Run {
		field := fmt.Sprintf("Run[%d]", i)
		switch {
		case strings.TrimSpace(r) == "":
			return invalid(field, "empty")
		case len(r) > MaxFieldLen:
			return invalid(field, "longer than %d characters", MaxFieldLen)
		case strings.ContainsAny(r, "\n\r\x00"):
			return invalid(field, "%q contains a line break; give each command as its own entry", r)
		case strings.HasSuffix(strings.TrimRight(r, " \t"), `\`):
			return invalid(field, "%q ends with a backslash, which would join it to the next Dockerfile line", r)
		}
	}
	if err := validateEnv(c.Env); err != nil {
		return err
	}
	return validateCmd(c.Cmd)
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func validateEnv(env map[string]string) error {
	if len(env) > MaxRun {
		return invalid("Env", "%d variables (at most %d)", len(env), MaxRun)
	}
	for k, v := range env {
		switch {
		case !envName.MatchString(k):
			return invalid("Env", "%q is not a variable name (letters, digits and _, not starting with a digit)", k)
		case len(v) > MaxFieldLen:
			return invalid("Env."+k, "longer than %d characters", MaxFieldLen)
		case strings.ContainsAny(v, "\n\r\x00"):
			return invalid("Env."+k, "contains a line break")
		}
	}
	return nil
}

func validateFrom(from string) error {
	switch {
	case from == "":
		return invalid("From", `missing; name the base image: "scratch" for a static binary, or an image present on this Docker host`)
	case len(from) > MaxFieldLen:
		return invalid("From", "longer than %d characters", MaxFieldLen)
	case strings.IndexFunc(from, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return invalid("From", "%q contains whitespace; give one image reference", from)
	case strings.HasPrefix(from, "-") || strings.Contains(from, "$"):
		return invalid("From", "%q is not an image reference", from)
	}
	return nil
}

// copyDst resolves a Copy destination to its absolute path in the image.
func copyDst(dst string) string {
	if path.IsAbs(dst) {
		return path.Clean(dst)
	}
	return path.Join(workdir, dst)
}

func validateCopy(i int, pair [2]string) error {
	field := fmt.Sprintf("Copy[%d]", i)
	src, dst := pair[0], pair[1]
	switch {
	case src == "":
		return invalid(field, "source is empty; give a file or directory relative to -dir")
	case len(src) > MaxFieldLen || len(dst) > MaxFieldLen:
		return invalid(field, "longer than %d characters", MaxFieldLen)
	case hasControl(src):
		return invalid(field, "source %q contains a control character", src)
	case filepath.IsAbs(src) || strings.HasPrefix(src, "/"):
		return invalid(field, "source %q is an absolute path; give a path relative to -dir", src)
	case !filepath.IsLocal(src):
		return invalid(field, "source %q escapes -dir; give a path inside it", src)
	case strings.ContainsAny(src, `*?[\`):
		return invalid(field, "source %q contains a wildcard or escape character (*, ?, [, \\); list files or a directory instead", src)
	case strings.Contains(src, "$"):
		return invalid(field, "source %q contains '$', which the Dockerfile would expand", src)
	case dst == "":
		return invalid(field, "destination is empty; give a path relative to %s or an absolute one", workdir)
	case hasControl(dst):
		return invalid(field, "destination %q contains a control character", dst)
	case strings.Contains(dst, "$"):
		return invalid(field, "destination %q contains '$', which the Dockerfile would expand", dst)
	case copyDst(dst) == proxyPath:
		return invalid(field, "destination %q would replace the proxy at %s", dst, proxyPath)
	}
	return nil
}

func validateCmd(cmd string) error {
	if len(cmd) > MaxFieldLen {
		return invalid("Cmd", "longer than %d characters", MaxFieldLen)
	}
	if !utf8.ValidString(cmd) {
		return invalid("Cmd", "not valid UTF-8")
	}
	argv, err := SplitCommand(cmd)
	if err != nil {
		return fmt.Errorf("%w DockerConf.Cmd: %w", ErrInvalid, err)
	}
	if len(argv) == 0 {
		return invalid("Cmd", `missing; give the command that starts the service, e.g. "./server --port 8080"`)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}
