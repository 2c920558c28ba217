package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary stands in for registry-cli when FAKE_CLI_EXITS is set:
// it appends its arguments to FAKE_CLI_LOG and exits with the next code
// of the comma-separated FAKE_CLI_EXITS (the last one repeats).
func TestMain(m *testing.M) {
	if codes := os.Getenv("FAKE_CLI_EXITS"); codes != "" {
		os.Exit(fakeCLI(strings.Split(codes, ","), os.Getenv("FAKE_CLI_LOG")))
	}
	os.Exit(m.Run())
}

func fakeCLI(codes []string, log string) int {
	b, _ := os.ReadFile(log)
	calls := strings.Count(string(b), "\n")
	f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return 3
	}
	f.WriteString(strings.Join(os.Args[1:], " ") + "\n")
	f.Close()
	code, _ := strconv.Atoi(codes[min(calls, len(codes)-1)])
	return code
}

// fake sets up the stand-in and returns its path and log.
func fake(t *testing.T, exits string) (cli, log string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log = filepath.Join(t.TempDir(), "calls")
	t.Setenv("FAKE_CLI_EXITS", exits)
	t.Setenv("FAKE_CLI_LOG", log)
	old := retryEvery
	retryEvery = time.Millisecond
	t.Cleanup(func() { retryEvery = old })
	return self, log
}

func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestAddPassesFlagsThenTheAddCommand(t *testing.T) {
	cli, log := fake(t, "0")
	if err := add(t.Context(), cli, []string{"-ephemeral", "-psk-file=/p"}, "/services/hello.json", "hello", time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, want := calls(t, log), []string{"-ephemeral -psk-file=/p add /services/hello.json hello"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("registry-cli called with %q, want %q", got, want)
	}
}

func TestAddRetriesUntilTheRegistryAnswers(t *testing.T) {
	cli, log := fake(t, "1,1,0")
	if err := add(t.Context(), cli, nil, "c.json", "hello", time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := len(calls(t, log)); n != 3 {
		t.Errorf("registry-cli ran %d times, want 3", n)
	}
}

func TestAddDoesNotRetryAUsageError(t *testing.T) {
	cli, log := fake(t, "2")
	if err := add(t.Context(), cli, nil, "c.json", "hello", time.Minute); err == nil {
		t.Fatal("add succeeded on a usage error")
	}
	if n := len(calls(t, log)); n != 1 {
		t.Errorf("registry-cli ran %d times, want 1", n)
	}
}

func TestAddGivesUpAfterWait(t *testing.T) {
	cli, _ := fake(t, "1")
	if err := add(t.Context(), cli, nil, "c.json", "hello", 0); err == nil {
		t.Fatal("add succeeded although registry-cli kept failing")
	}
}
