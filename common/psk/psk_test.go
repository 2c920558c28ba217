package psk

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeriveIsStableAndSeparatesPassphrases(t *testing.T) {
	a1, err := Derive("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := Derive("correct horse battery staple")
	b, _ := Derive("correct horse battery stapler")
	if len(a1) != Size || !bytes.Equal(a1, a2) || bytes.Equal(a1, b) {
		t.Fatalf("derive: len=%d same=%v differs=%v", len(a1), bytes.Equal(a1, a2), !bytes.Equal(a1, b))
	}
	// The KDF is a protocol contract: this vector must never change.
	const want = "932ac05da85632000fbcd2ca3d39d3d169a5eb0a7e99e25f7637fb9295685097"
	if got := hex.EncodeToString(a1); got != want {
		t.Fatalf("derived %s, want %s: changing the KDF splits every network", got, want)
	}
}

func TestMissingOrEmptyPSKIsRefused(t *testing.T) {
	for _, src := range []Source{{}, {Flag: "   "}, {Env: ""}} {
		if _, err := Resolve(src); !errors.Is(err, ErrMissing) {
			t.Fatalf("Resolve(%+v) = %v, want ErrMissing", src, err)
		}
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := Resolve(Source{File: empty}); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), empty) {
		t.Fatalf("empty file: %v, want ErrMissing", err)
	}
	if _, err := Resolve(Source{File: filepath.Join(t.TempDir(), "nope")}); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestResolveOrderAndFileFormats(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("file secret\n"), 0o600)
	fromFile, err := Resolve(Source{File: pass, Env: "env secret"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Derive("file secret")
	if !bytes.Equal(fromFile, want) {
		t.Fatal("passphrase file not derived like the flag")
	}
	flag, _ := Resolve(Source{Flag: "flag secret", File: pass, Env: "env secret"})
	if wantFlag, _ := Derive("flag secret"); !bytes.Equal(flag, wantFlag) {
		t.Fatal("-psk does not win over the file and env")
	}
	raw := bytes.Repeat([]byte{0xab}, Size)
	swarm := filepath.Join(dir, "swarm.key")
	os.WriteFile(swarm, []byte("/key/swarm/psk/1.0.0/\n/base16/\n"+hex.EncodeToString(raw)+"\n"), 0o600)
	key, err := Resolve(Source{File: swarm})
	if err != nil || !bytes.Equal(key, raw) {
		t.Fatalf("swarm.key: %x, %v", key, err)
	}
}

// FuzzParse feeds arbitrary PSK file contents to the parser: never a panic,
// and every key it returns has the right size.
func FuzzParse(f *testing.F) {
	f.Add([]byte("a passphrase"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(bytes.Repeat([]byte{1}, Size))))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base64/\nAAAA"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base16/\nzz"))
	f.Fuzz(func(t *testing.T, in []byte) {
		key, err := Parse(in)
		if err == nil && len(key) != Size {
			t.Fatalf("key of %d bytes", len(key))
		}
	})
}
