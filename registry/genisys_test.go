package registry

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestConnectorServiceMapsSeed001OntoServiceInfo(t *testing.T) {
	for _, tc := range []struct {
		name, body, url string
		check           func(ServiceInfo) bool
	}{
		{"image and command", `{"name":"web","image":"nginx:1","command":"/run.sh -x","environment":{"A":"1"},"ports":["8080"]}`, "",
			func(i ServiceInfo) bool {
				return i.DockerHash == "nginx:1" && i.Command == "/run.sh -x" && i.Exec == nil && i.Environment["A"] == "1" && i.Ports[0] == "8080"
			}},
		{"command alone is a process", `{"name":"p","command":"python3 -m http.server"}`, "",
			func(i ServiceInfo) bool {
				return i.Exec != nil && i.Exec.Command == "python3" && len(i.Exec.Args) == 2 && i.Command == ""
			}},
		{"Exec wins over command without an image", `{"command":"ignored","Exec":{"Command":"/bin/hello"}}`, "p",
			func(i ServiceInfo) bool { return i.Exec.Command == "/bin/hello" && i.Command == "" }},
		{"ServiceInfo fields in the same object", `{"name":"s","image":"x:1","CpuReq":250,"NetworkHardReq":{"RTT":40}}`, "",
			func(i ServiceInfo) bool { return i.CpuReq == 250 && i.NetworkHardReq.RTT == 40 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := DecodeConnectorService([]byte(tc.body), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cs.Info) {
				t.Errorf("mapped to %+v", cs.Info)
			}
			// What GET answers reads back to the same definition.
			b, err := json.Marshal(cs)
			if err != nil {
				t.Fatal(err)
			}
			again, err := DecodeConnectorService(b, cs.Name)
			if err != nil {
				t.Fatalf("read back %s: %v", b, err)
			}
			a1, _ := json.Marshal(cs.Info)
			a2, _ := json.Marshal(again.Info)
			if string(a1) != string(a2) {
				t.Errorf("round trip changed it:\n%s\n%s", a1, a2)
			}
		})
	}
}

func TestConnectorServiceRefusals(t *testing.T) {
	for _, tc := range []struct{ name, body, url string }{
		{"no name", `{"image":"x:1"}`, ""},
		{"names disagree", `{"name":"a","image":"x:1"}`, "b"},
		{"nothing to run", `{"name":"a"}`, ""},
		{"trailing brace", `{"name":"a","image":"x:1"}}`, ""},
		{"trailing bracket", `{"name":"a","image":"x:1"}]`, ""},
		{"two values", `{"name":"a","image":"x:1"} {}`, ""},
		{"bad port", `{"name":"a","image":"x:1","ports":["http"]}`, ""},
		{"image and DockerHash disagree", `{"name":"a","image":"x:1","DockerHash":"y:2"}`, ""},
		{"not an object", `[1]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeConnectorService([]byte(tc.body), tc.url); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: got %v, want an ErrInvalid", tc.body, err)
			}
		})
	}
}

func FuzzParseConnector(f *testing.F) {
	for _, s := range []string{"physarum", "physarum:labels?site=a", "physarum:labels?site=a&rack=3", "physarum:node?name=n1",
		"http://localhost:7051", "https://h/x/", "ftp://x", "physarum:labels?", "physarum:labels?a=1&a=2", "physarum:node?name=BAD", "http://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseConnector(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q: error %v is not ErrInvalid", s, err)
			}
			return
		}
		switch sel.Kind {
		case KindNetwork, KindLabels, KindNode, KindConnector:
		default:
			t.Fatalf("%q: kind %q", s, sel.Kind)
		}
		if sel.Kind == KindLabels && len(sel.Labels) == 0 {
			t.Fatalf("%q: a label selector without labels", s)
		}
		// A parsed selector matches nodes without panicking.
		sel.Matches(Node{Name: "n1", Labels: map[string]string{"site": "a"}})
	})
}
