package nodeflags

import (
	"errors"
	"flag"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/common/psk"
)

const peerAddr = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWLVwJAVcT5MhQwKbx8yibxxKZo1YZwqTvRuAG7W6JsBn1"

func parse(t *testing.T, args []string, env map[string]string) (*Flags, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := Register(fs, "testbin", Defaults{})
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	_, _, err := f.Resolve(func(k string) string { return env[k] })
	return f, err
}

func TestResolve(t *testing.T) {
	key := func(t *testing.T) string {
		t.Helper()
		return "-keyfile=" + filepath.Join(t.TempDir(), "k")
	}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no PSK anywhere", []string{"-ephemeral"}, nil, "no PSK"},
		{"empty PSK flag", []string{"-ephemeral", "-psk="}, nil, "no PSK"},
		{"PSK from env", []string{"-ephemeral"}, map[string]string{"P2P_PSK": "s"}, ""},
		{"bootstrap from flag", []string{"-ephemeral", "-psk=s", "-bootstrap=" + peerAddr}, nil, ""},
		{"bootstrap from env", []string{"-ephemeral", "-psk=s"}, map[string]string{"P2P_BOOTSTRAPS": peerAddr + " " + peerAddr}, ""},
		{"bootstrap without peer ID", []string{"-ephemeral", "-psk=s", "-bootstrap=/ip4/127.0.0.1/tcp/1"}, nil, "no /p2p/<peer-id>"},
		{"bootstrap garbage", []string{"-ephemeral", "-psk=s", "-bootstrap=localhost:4001"}, nil, "bootstrap address"},
		{"listen not TCP", []string{"-ephemeral", "-psk=s", "-listen=/ip4/0.0.0.0/udp/1/quic-v1"}, nil, "not TCP"},
		{"listen garbage", []string{"-ephemeral", "-psk=s", "-listen=0.0.0.0:1"}, nil, "-listen"},
		{"unknown algo", []string{"-ephemeral", "-psk=s", "-algo=dsa"}, nil, "-algo"},
		{"bad net delay", []string{"-ephemeral", "-psk=s"}, map[string]string{EnvNetDelay: "20"}, EnvNetDelay},
		{"no identity", []string{"-psk=s", "-keyfile="}, nil, "-ephemeral"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{key(t)}, c.args...)
			_, err := parse(t, args, c.env)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func TestMissingPSKIsTheSentinel(t *testing.T) {
	_, err := parse(t, []string{"-ephemeral"}, nil)
	if !errors.Is(err, psk.ErrMissing) {
		t.Fatalf("err = %v", err)
	}
}

func TestBootstrapsOfOnePeerMerge(t *testing.T) {
	infos, err := ParseBootstraps([]string{peerAddr, strings.Replace(peerAddr, "4001", "4002", 1)})
	if err != nil || len(infos) != 1 || len(infos[0].Addrs) != 2 {
		t.Fatalf("infos %v err %v", infos, err)
	}
}

// FuzzParseBootstraps feeds arbitrary strings (as from P2P_BOOTSTRAPS) to
// the bootstrap parser: never a panic, and every peer returned has an ID.
func FuzzParseBootstraps(f *testing.F) {
	f.Add(peerAddr)
	f.Add("/ip4/127.0.0.1/tcp/1")
	f.Add("/dns4/x/tcp/1/p2p/Qm")
	f.Add("garbage /p2p/")
	f.Fuzz(func(t *testing.T, s string) {
		infos, err := ParseBootstraps(strings.Fields(s))
		if err != nil {
			return
		}
		for _, ai := range infos {
			if ai.ID == "" {
				t.Fatal("peer without ID")
			}
		}
	})
}
