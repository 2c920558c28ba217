package registry

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "hello", "hello-world", "v1.2_x", strings.Repeat("a", 63)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Hello", "-a", "a-", "a b", "a/b", "..", strings.Repeat("a", 64), "é"} {
		if err := ValidateName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestServiceInfoValidate(t *testing.T) {
	exec := &ExecConf{Command: "/bin/x"}
	cases := []struct {
		name  string
		info  ServiceInfo
		field string // "" = valid
	}{
		{"minimal exec", ServiceInfo{Exec: exec}, ""},
		{"docker", ServiceInfo{DockerHash: "sha256:abc"}, ""},
		{"soft equals hard", ServiceInfo{Exec: exec, NetworkSoftReq: PerfInd{RTT: 10}, NetworkHardReq: PerfInd{RTT: 10}}, ""},
		{"soft without hard", ServiceInfo{Exec: exec, NetworkSoftReq: PerfInd{RTT: 10}}, ""},
		{"soft above hard", ServiceInfo{Exec: exec, NetworkSoftReq: PerfInd{RTT: 11}, NetworkHardReq: PerfInd{RTT: 10}}, "NetworkSoftReq.RTT"},
		{"negative rtt", ServiceInfo{Exec: exec, NetworkHardReq: PerfInd{RTT: -1}}, "NetworkHardReq.RTT"},
		{"nanoseconds", ServiceInfo{Exec: exec, NetworkHardReq: PerfInd{RTT: 20e6}}, "NetworkHardReq.RTT"},
		{"NaN", ServiceInfo{Exec: exec, NetworkSoftReq: PerfInd{RTT: math.NaN()}}, "NetworkSoftReq.RTT"},
		{"negative cpu", ServiceInfo{Exec: exec, CpuReq: -1}, "CpuReq"},
		{"negative memory", ServiceInfo{Exec: exec, MemoryReq: -1}, "MemoryReq"},
		{"nothing to run", ServiceInfo{}, "Exec"},
		{"empty command", ServiceInfo{Exec: &ExecConf{}}, "Exec.Command"},
		{"bad env name", ServiceInfo{Exec: &ExecConf{Command: "x", Env: map[string]string{"A=B": "c"}}}, "Exec.Env"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.info.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %v, want one naming %s", err, c.field)
			}
		})
	}
}
