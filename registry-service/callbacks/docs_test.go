package callbacks_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/registry"
	"github.com/physarum-p2p/physarum/registry-service/callbacks"
)

// The reference's callback sections (docs/reference/http-api.md) hold a
// real delivery and the signature check in Go a receiver would run:
// the delivery verifies with the documented secret, with this package's
// Sign and with the documented Go itself, run as a program.

const docSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// docBlock returns the fenced block that follows marker in the reference.
func docBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "reference", "http-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "<!-- "+marker+" -->\n```")
	if !ok {
		t.Fatalf("no %q block in http-api.md", marker)
	}
	_, after, _ = strings.Cut(after, "\n") // the fence's language
	block, _, ok := strings.Cut(after, "\n```")
	if !ok {
		t.Fatalf("the %q block is not closed", marker)
	}
	return block + "\n"
}

// docDelivery reads the documented delivery.
func docDelivery(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	raw := docBlock(t, "callback-delivery-example")
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(raw, "\n\n")
	body = strings.TrimSuffix(body, "\n")
	if int64(len(body)) != req.ContentLength {
		t.Fatalf("the example's body is %d bytes, its Content-Length %d", len(body), req.ContentLength)
	}
	return req, []byte(body)
}

func TestTheDocumentedDeliveryVerifies(t *testing.T) {
	req, body := docDelivery(t)
	if !verify(docSecret, req.Header, body) {
		t.Fatal("the documented delivery does not verify with the documented secret")
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(docSecret, "whsec_"))
	if got := callbacks.Sign(key, req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), body); got != req.Header.Get("webhook-signature") {
		t.Errorf("Sign gives %s, the example says %s", got, req.Header.Get("webhook-signature"))
	}
	var e registry.Event
	if err := json.Unmarshal(body, &e); err != nil || e.ID != req.Header.Get("webhook-id") || e.Index == 0 || e.Topic == "" || e.Type == "" || e.Key == "" || len(e.Object) == 0 {
		t.Errorf("the example's body is not an event with webhook-id as its id: %+v, %v", e, err)
	}
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || req.Header.Get("User-Agent") != callbacks.UserAgent {
		t.Errorf("the example is a %s with Content-Type %q, User-Agent %q", req.Method, req.Header.Get("Content-Type"), req.Header.Get("User-Agent"))
	}
}

// The documented Go, compiled and run on the documented delivery: it
// accepts it, and refuses it with one byte of the body changed.
func TestTheDocumentedVerifierRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool; skipped with -short")
	}
	req, body := docDelivery(t)
	dir := t.TempDir()
	prog := `package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
)

` + docBlock(t, "callback-verify-go") + `
func main() {
	h := http.Header{}
	h.Set("webhook-id", os.Args[1])
	h.Set("webhook-timestamp", os.Args[2])
	h.Set("webhook-signature", os.Args[3])
	body, _ := os.ReadFile(os.Args[5])
	if !verify(os.Args[4], h, body) {
		os.Exit(1)
	}
}
`
	if err := os.WriteFile(filepath.Join(dir, "verify.go"), []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "verify")
	build := exec.Command("go", "build", "-o", bin, "verify.go")
	build.Dir = dir
	build.Env = append(os.Environ(), "GO111MODULE=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the documented Go does not build: %v\n%s\n%s", err, out, prog)
	}
	run := func(b []byte) error {
		f := filepath.Join(dir, "body")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		h := req.Header
		return exec.Command(bin, h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), docSecret, f).Run()
	}
	if err := run(body); err != nil {
		t.Errorf("the documented Go refuses the documented delivery: %v", err)
	}
	changed := []byte(strings.Replace(string(body), "pending", "Pending", 1))
	if err := run(changed); err == nil {
		t.Error("the documented Go accepts a changed body")
	}
}
