package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRunCreatesTheKeyOnceAndKeepsItsPeerID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "registry.key")
	first, err := run(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := run(path)
	if err != nil {
		t.Fatal(err)
	}
	if first != again {
		t.Errorf("peer ID changed from %s to %s on the second run", first, again)
	}
}

func TestRunRefusesACorruptKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.key")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(path); err == nil {
		t.Fatal("run accepted a corrupt key file")
	}
}
