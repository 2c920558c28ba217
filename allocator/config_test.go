package main

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func TestDefaultNameIsTheHostNameMadeAName(t *testing.T) {
	for _, c := range []struct{ host, want string }{
		{"edge-01", "edge-01"},
		{"Edge-01.Lab.example", "edge-01.lab.example"},
		{"box with spaces", "box-with-spaces"},
		{"_weird_", "weird"},
		{"--", ""},
		{strings.Repeat("a", 62) + ".bcd", strings.Repeat("a", 62)},
		{"ünïcode", "n-code"},
	} {
		got := defaultName(func() (string, error) { return c.host, nil })
		if got != c.want {
			t.Errorf("host %q: name %q, want %q", c.host, got, c.want)
		}
	}
	if got := defaultName(func() (string, error) { return "", errors.New("no host name") }); got != "" {
		t.Errorf("without a host name: %q", got)
	}
}

func TestNameFlag(t *testing.T) {
	for _, c := range []struct {
		name    string
		wantErr string
	}{
		{"n1", ""},
		{"site-a.rack_3", ""},
		{"N1", `-name "N1"`},
		{"-n1", `-name "-n1"`},
		{strings.Repeat("a", 64), "-name"},
	} {
		cfg, err := parseFlags([]string{"-name", c.name, "-memory", "64"}, io.Discard)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("-name %q: %v", c.name, err)
		case c.wantErr == "" && cfg.name != c.name:
			t.Errorf("-name %q: configured %q", c.name, cfg.name)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("-name %q: %v; want an error with %q", c.name, err, c.wantErr)
		}
	}
	cfg, err := parseFlags([]string{"-memory", "64"}, io.Discard)
	if want := defaultName(os.Hostname); err != nil || cfg.name != want {
		t.Errorf("no -name: %q, %v; want the host name made a name, %q", cfg.name, err, want)
	}
}
