package cli

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name, in, wantErr string
	}{
		{"exec", `{"NetworkSoftReq":{"RTT":5},"NetworkHardReq":{"RTT":10},"CpuReq":100,"MemoryReq":64,"Exec":{"Command":"/bin/x"}}`, ""},
		{"docker", `{"CpuReq":100,"DockerConf":{"From":"scratch","Cmd":"/app/x"}}`, ""},
		{"malformed", `{"CpuReq": 100,`, "malformed JSON"},
		{"unknown field", `{"CpuRequest":100,"Exec":{"Command":"x"}}`, "CpuRequest"},
		{"two values", `{"Exec":{"Command":"x"}} {}`, "more than one value"},
		{"neither", `{"CpuReq":100}`, "no DockerConf or Exec"},
		{"both", `{"Exec":{"Command":"x"},"DockerConf":{"From":"scratch"}}`, "not both"},
		{"soft above hard", `{"NetworkSoftReq":{"RTT":20},"NetworkHardReq":{"RTT":10},"Exec":{"Command":"x"}}`, "NetworkSoftReq.RTT"},
		{"seconds as ms", `{"NetworkHardReq":{"RTT":2000000},"Exec":{"Command":"x"}}`, "milliseconds"},
		{"negative cpu", `{"CpuReq":-1,"Exec":{"Command":"x"}}`, "CpuReq"},
		{"negative memory", `{"MemoryReq":-5,"Exec":{"Command":"x"}}`, "MemoryReq"},
		{"empty command", `{"Exec":{"Command":" "}}`, "Exec.Command"},
		{"rtt as string", `{"NetworkHardReq":{"RTT":"10ms"},"Exec":{"Command":"x"}}`, "malformed JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseConfig([]byte(c.in))
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one naming %q", err, c.wantErr)
			}
		})
	}
}

// FuzzParseConfig feeds arbitrary bytes to the service config parser:
// never a panic, and whatever it accepts is a valid ServiceInfo.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"NetworkSoftReq":{"RTT":5},"NetworkHardReq":{"RTT":10},"CpuReq":100,"MemoryReq":64,"Exec":{"Command":"/bin/x","Args":["${SERVICE_PORT}"],"Env":{"A":"b"}}}`))
	f.Add([]byte(`{"DockerConf":{"From":"scratch","Copy":[["a","b"]],"Cmd":"/app/x"}}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := parseConfig(in)
		if err != nil {
			return
		}
		info := c.info()
		if c.isDocker() {
			info.DockerHash = "x"
		}
		if err := info.Validate(); err != nil {
			t.Fatalf("accepted a config whose ServiceInfo is invalid: %v", err)
		}
	})
}
