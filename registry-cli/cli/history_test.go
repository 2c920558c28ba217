package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

func TestHistoryTable(t *testing.T) {
	at := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	vs := []registry.ServiceVersion{
		{Version: 3, SetBy: "peer " + peerID, SetAt: at.Add(time.Hour), Info: registry.ServiceInfo{
			Exec:   &registry.ExecConf{Command: "/usr/local/bin/hello", Args: []string{"-port", "${SERVICE_PORT}", "-greeting", "a rather long greeting that goes on"}},
			CpuReq: 200, MemoryReq: 64}},
		{Version: 2, SetBy: "http 127.0.0.1", SetAt: at, Info: registry.ServiceInfo{DockerHash: "hello@sha256:abcd", Command: "serve -v", CpuReq: 100, MemoryReq: 32}},
		{Version: 1, Info: registry.ServiceInfo{DockerHash: "hello:1", Exec: &registry.ExecConf{Command: "/bin/hello"}, CpuReq: 100, MemoryReq: 32}},
	}
	var b bytes.Buffer
	if err := writeHistory(&b, vs); err != nil {
		t.Fatal(err)
	}
	f := func(t time.Time) string { return t.Local().Format(time.DateTime) }
	want := `VERSION      SET AT               SET BY                RUNTIME         IMAGE/COMMAND                                                 CPU   MEMORY
3 (current)  ` + f(at.Add(time.Hour)) + `  peer 12D3KooW…6JsBn1  process         /usr/local/bin/hello -port ${SERVICE_PORT} -greeting a rath…  200m  64MiB
2            ` + f(at) + `  http 127.0.0.1        docker          hello@sha256:abcd serve -v                                    100m  32MiB
1            -                    -                     docker,process  hello:1 | /bin/hello                                          100m  32MiB
`
	if got := b.String(); got != want {
		t.Errorf("history table:\n%s\nwant:\n%s", got, want)
	}
}

func TestInstancesTableShowsVersions(t *testing.T) {
	insts := []registry.Instance{
		{ID: "hello-1", Service: "hello", Version: 3, State: "running", Runtime: "process", Node: peerID, Started: now.Add(-90 * time.Second)},
		{ID: "hello-0", Service: "hello", State: "starting", Runtime: "docker", Node: "n1", OnDemand: true, Restarts: 2},
	}
	var b bytes.Buffer
	if err := writeInstances(&b, insts, now); err != nil {
		t.Fatal(err)
	}
	want := `ID       SERVICE  VERSION  STATE     RUNTIME  NODE             ON DEMAND  RESTARTS  STARTED
hello-1  hello    3        running   process  12D3KooW…6JsBn1  false      0         1m30s ago
hello-0  hello    -        starting  docker   n1               true       2         -
`
	if got := b.String(); got != want {
		t.Errorf("instances table:\n%s\nwant:\n%s", got, want)
	}
}
