package imagebuild

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseDockerConf(t *testing.T) {
	got, err := ParseDockerConf([]byte(`{
		"From": "scratch",
		"Copy": [["bin/server", "server"], ["static", "/srv/www"]],
		"Cmd": "./server --port 8080",
		"ProxyClientMode": true
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := DockerConf{
		From:            "scratch",
		Copy:            [][2]string{{"bin/server", "server"}, {"static", "/srv/www"}},
		Cmd:             "./server --port 8080",
		ProxyClientMode: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseDockerConfRefusals(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown field", `{"From": "scratch", "Cmd": "x", "Entrypoint": "y"}`, `json: unknown field "Entrypoint" in DockerConf`},
		{"copy pair of one", `{"From": "scratch", "Cmd": "x", "Copy": [["a", "b"], ["a"]]}`, `invalid DockerConf.Copy[1]: want a ["src", "dst"] pair, got 1 strings`},
		{"copy pair of three", `{"From": "scratch", "Cmd": "x", "Copy": [["a", "b", "c"]]}`, `invalid DockerConf.Copy[0]: want a ["src", "dst"] pair, got 3 strings`},
		{"wrong type", `{"From": 3, "Cmd": "x"}`, `parse DockerConf: json: cannot unmarshal`},
		{"trailing data", `{"From": "scratch", "Cmd": "x"} {}`, "parse DockerConf: unexpected data after the object"},
		{"trailing garbage", `{"From": "scratch", "Cmd": "x"} x`, "parse DockerConf: unexpected data after the object"},
		{"not an object", `[]`, "parse DockerConf: json: cannot unmarshal array"},
		{"empty", ``, "parse DockerConf: EOF"},
		{"null", `null`, "invalid DockerConf.From: missing"},
		{"validated", `{"From": "scratch", "Cmd": "x", "Run": ["make"]}`, "invalid DockerConf.Run: a FROM scratch image has no shell"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDockerConf([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseDockerConf(%s) = %v, want an error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

// A DockerConf embedded in a larger config (as registry-cli reads it) is
// decoded just as strictly.
func TestDockerConfEmbeddedIsStrict(t *testing.T) {
	var cfg struct {
		CpuReq     int
		DockerConf DockerConf
	}
	err := json.Unmarshal([]byte(`{"CpuReq": 100, "DockerConf": {"From": "scratch", "Cmd": "x", "Cpoy": []}}`), &cfg)
	if err == nil || !strings.Contains(err.Error(), `unknown field "Cpoy" in DockerConf`) {
		t.Fatalf("embedded unknown field: %v", err)
	}
	cfg.CpuReq = 0
	err = json.Unmarshal([]byte(`{"CpuReq": 5, "DockerConf": {"From": "scratch", "Cmd": "x", "Copy": [["a", "b"]]}}`), &cfg)
	if err != nil || cfg.DockerConf.Copy[0] != [2]string{"a", "b"} || cfg.CpuReq != 5 {
		t.Fatalf("embedded: %+v, %v", cfg, err)
	}
}

func TestValidate(t *testing.T) {
	ok := DockerConf{From: "scratch", Cmd: "./server"}
	with := func(f func(*DockerConf)) DockerConf {
		c := ok
		f(&c)
		return c
	}
	tests := []struct {
		name string
		conf DockerConf
		want string // "" = valid
	}{
		{"minimal", ok, ""},
		{"scratch in capitals", with(func(c *DockerConf) { c.From = "SCRATCH"; c.Run = []string{"x"} }), "invalid DockerConf.Run: a FROM scratch image has no shell"},
		{"local base with Run", with(func(c *DockerConf) { c.From = "alpine:3.20"; c.Run = []string{"apk add curl", "  make  "} }), ""},
		{"copies", with(func(c *DockerConf) {
			c.Copy = [][2]string{{"bin/server", "server"}, {".", "."}, {"a/../b", "/etc/b"}, {"static dir", "www/"}}
		}), ""},

		{"From missing", with(func(c *DockerConf) { c.From = "" }), `invalid DockerConf.From: missing; name the base image: "scratch" for a static binary`},
		{"From with a space", with(func(c *DockerConf) { c.From = "alpine AS build" }), `invalid DockerConf.From: "alpine AS build" contains whitespace`},
		{"From with a newline", with(func(c *DockerConf) { c.From = "alpine\nRUN rm -rf /" }), `invalid DockerConf.From: "alpine\nRUN rm -rf /" contains whitespace`},
		{"From a flag", with(func(c *DockerConf) { c.From = "--platform=arm64" }), `invalid DockerConf.From: "--platform=arm64" is not an image reference`},
		{"From a variable", with(func(c *DockerConf) { c.From = "$BASE" }), `invalid DockerConf.From: "$BASE" is not an image reference`},

		{"Copy source empty", with(func(c *DockerConf) { c.Copy = [][2]string{{"", "x"}} }), "invalid DockerConf.Copy[0]: source is empty"},
		{"Copy source absolute", with(func(c *DockerConf) { c.Copy = [][2]string{{"a", "a"}, {"/etc/passwd", "x"}} }), `invalid DockerConf.Copy[1]: source "/etc/passwd" is an absolute path; give a path relative to -dir`},
		{"Copy source ..", with(func(c *DockerConf) { c.Copy = [][2]string{{"..", "x"}} }), `invalid DockerConf.Copy[0]: source ".." escapes -dir; give a path inside it`},
		{"Copy source ../x", with(func(c *DockerConf) { c.Copy = [][2]string{{"../secrets/key", "x"}} }), `invalid DockerConf.Copy[0]: source "../secrets/key" escapes -dir`},
		{"Copy source a/../../x", with(func(c *DockerConf) { c.Copy = [][2]string{{"a/../../x", "x"}} }), `invalid DockerConf.Copy[0]: source "a/../../x" escapes -dir`},
		{"Copy source wildcard", with(func(c *DockerConf) { c.Copy = [][2]string{{"*.py", "."}} }), `invalid DockerConf.Copy[0]: source "*.py" contains a wildcard`},
		{"Copy source variable", with(func(c *DockerConf) { c.Copy = [][2]string{{"$HOME", "."}} }), `invalid DockerConf.Copy[0]: source "$HOME" contains '$'`},
		{"Copy source control", with(func(c *DockerConf) { c.Copy = [][2]string{{"a\nb", "."}} }), `invalid DockerConf.Copy[0]: source "a\nb" contains a control character`},
		{"Copy destination empty", with(func(c *DockerConf) { c.Copy = [][2]string{{"a", ""}} }), "invalid DockerConf.Copy[0]: destination is empty"},
		{"Copy destination replaces the proxy", with(func(c *DockerConf) { c.Copy = [][2]string{{"a", "./proxy"}} }), `invalid DockerConf.Copy[0]: destination "./proxy" would replace the proxy at /app/proxy`},
		{"Copy destination replaces the proxy, absolute", with(func(c *DockerConf) { c.Copy = [][2]string{{"a", "/app//proxy"}} }), `would replace the proxy`},
		{"Copy too many", with(func(c *DockerConf) { c.Copy = make([][2]string, MaxCopy+1) }), "invalid DockerConf.Copy: 257 entries (at most 256)"},

		{"Run on scratch", with(func(c *DockerConf) { c.Run = []string{"make"} }), "invalid DockerConf.Run: a FROM scratch image has no shell to run commands in; build static binaries beforehand and list them in Copy"},
		{"Run empty", with(func(c *DockerConf) { c.From = "alpine"; c.Run = []string{"make", " "} }), "invalid DockerConf.Run[1]: empty"},
		{"Run with a newline", with(func(c *DockerConf) { c.From = "alpine"; c.Run = []string{"make\nENV X=1"} }), `invalid DockerConf.Run[0]: "make\nENV X=1" contains a line break`},
		{"Run continued", with(func(c *DockerConf) { c.From = "alpine"; c.Run = []string{`make \ `} }), `invalid DockerConf.Run[0]: "make \\ " ends with a backslash`},

		{"Cmd missing", with(func(c *DockerConf) { c.Cmd = "" }), `invalid DockerConf.Cmd: missing; give the command that starts the service`},
		{"Cmd blank", with(func(c *DockerConf) { c.Cmd = " \t" }), `invalid DockerConf.Cmd: missing`},
		{"Cmd unbalanced", with(func(c *DockerConf) { c.Cmd = `./server --name "x` }), "invalid DockerConf.Cmd: bad command: the double quote at offset 16 is never closed"},
		{"Cmd not UTF-8", with(func(c *DockerConf) { c.Cmd = "./server \xff" }), "invalid DockerConf.Cmd: not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.conf)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v\nwant an ErrInvalid containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}
