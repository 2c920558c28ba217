package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// processesWithEnv counts live processes whose environment holds kv.
func processesWithEnv(t *testing.T, kv string) int {
	t.Helper()
	envs, err := filepath.Glob("/proc/[0-9]*/environ")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range envs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, v := range bytes.Split(b, []byte{0}) {
			if string(v) == kv {
				n++
				break
			}
		}
	}
	return n
}
