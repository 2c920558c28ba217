package keys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestKeyFileIsPrivateAndReloadsToTheSamePeerID(t *testing.T) {
	for _, algo := range Algorithms {
		t.Run(algo, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "node.key")
			k1, created, err := LoadOrCreate(path, algo, MinRSABits)
			if err != nil || !created {
				t.Fatalf("create: created=%v err=%v", created, err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if mode := st.Mode().Perm(); mode != 0o600 {
				t.Fatalf("key file mode %o, want 600", mode)
			}
			k2, created, err := LoadOrCreate(path, algo, MinRSABits)
			if err != nil || created {
				t.Fatalf("reload: created=%v err=%v", created, err)
			}
			id1, _ := peer.IDFromPrivateKey(k1)
			id2, _ := peer.IDFromPrivateKey(k2)
			if id1 != id2 {
				t.Fatalf("reloaded peer ID %s != %s", id2, id1)
			}
		})
	}
}

func TestCorruptKeyFileIsOneClearError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadOrCreate(path, "Ed25519", 0)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, path) {
		t.Fatalf("error %q should be one line naming the file", msg)
	}
	if b, _ := os.ReadFile(path); string(b) != "not a key" {
		t.Fatal("the corrupt key file was overwritten")
	}
}

func TestBadAlgorithmAndBits(t *testing.T) {
	if _, err := Generate("dsa", 0); err == nil || !strings.Contains(err.Error(), "Ed25519") {
		t.Fatalf("unknown algorithm: %v", err)
	}
	if _, err := Generate("RSA", 1024); err == nil {
		t.Fatal("accepted a 1024-bit RSA key")
	}
}
