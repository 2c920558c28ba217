package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// add looks for an Exec service's command on the machine running the CLI
// and warns when it is not there (it may exist on the nodes), without
// refusing the service.
func TestAddWarnsWhenTheCommandIsNotFoundHere(t *testing.T) {
	for _, tc := range []struct {
		command string
		warn    bool
	}{
		{"sh", false}, // a bare name on PATH
		{"/bin/sh", false},
		{"no-such-command-physarum", true},
		{"/no/such/dir/hello", true},
	} {
		t.Run(tc.command, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "svc.json")
			body := `{"CpuReq":100,"MemoryReq":16,"Exec":{"Command":"` + tc.command + `"}}`
			if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			env := Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string {
				if k == "P2P_PSK" {
					return "test"
				}
				return ""
			}}
			code := Run(t.Context(), []string{"-ephemeral", "add", "-no-add", conf, "svc"}, env)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			warned := strings.Contains(stderr.String(), "warning: command "+`"`+tc.command+`" is not found on this machine`)
			if warned != tc.warn {
				t.Fatalf("warning = %v, want %v; stderr: %q", warned, tc.warn, stderr.String())
			}
			if tc.warn && strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Errorf("the warning is not one line: %q", stderr.String())
			}
		})
	}
}
