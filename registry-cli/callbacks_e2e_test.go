package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/registry"
)

// registry-cli callback add, callbacks and callback delete against a real
// registry-service, whose delivery worker POSTs a service's events to a
// receiver in this test, which checks their signature with the secret add
// printed; the refusals.
func TestCallbacks(t *testing.T) {
	n := startRegistry(t)
	var mu sync.Mutex
	var got []registry.Event
	secret := ""
	bad := 0
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(r.Header.Get("webhook-id") + "." + r.Header.Get("webhook-timestamp") + "." + string(body)))
		var e registry.Event
		if r.Header.Get("webhook-signature") != "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)) || json.Unmarshal(body, &e) != nil {
			bad++
		}
		got = append(got, e)
	}))
	t.Cleanup(rc.Close)

	var cb registry.Callback
	n.mustJSON(&cb, "callback", "add", rc.URL+"/hook", "-service", "hello")
	if cb.ID == "" || !strings.HasPrefix(cb.Secret, "whsec_") || cb.Service != "hello" {
		t.Fatalf("callback add -json: %+v", cb)
	}
	mu.Lock()
	secret = cb.Secret
	mu.Unlock()
	out := n.must("callback", "add", rc.URL+"/other", "-instance", "0B6E3A4C-6A3F-4C1E-9D1E-2F7D1D9C0A11")
	if !strings.Contains(out, "for instance 0b6e3a4c-6a3f-4c1e-9d1e-2f7d1d9c0a11 of "+rc.URL+"/other") || !strings.Contains(out, "secret: whsec_") {
		t.Errorf("callback add:\n%s", out)
	}
	otherID := strings.Fields(out)[2]

	cfg := writeFile(t, "hello.json", goodConfig)
	n.must("add", cfg, "hello")
	n.must("add", cfg, "web")
	eventually.Succeeds(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return fmt.Errorf("no delivery yet")
		}
		return nil
	})
	mu.Lock()
	if len(got) != 1 || got[0].Topic != registry.TopicService || got[0].Key != "hello" || got[0].Type != registry.EventCreated || bad != 0 {
		t.Errorf("deliveries %+v, %d badly signed; want service hello created", got, bad)
	}
	mu.Unlock()

	var list []registry.Callback
	eventually.Succeeds(t, 30*time.Second, func() error {
		n.mustJSON(&list, "callbacks")
		if len(list) != 2 {
			return fmt.Errorf("%d callbacks listed", len(list))
		}
		for _, c := range list {
			if c.Secret != "" {
				t.Fatalf("callbacks shows a secret: %+v", c)
			}
			if c.ID == cb.ID && (c.Delivered != 1 || c.LastSuccess.IsZero()) {
				return fmt.Errorf("state %+v", c)
			}
		}
		return nil
	})
	table := n.must("callbacks")
	if !strings.Contains(table, cb.ID+"  service hello") || !strings.Contains(table, otherID+"  instance 0b6e3a4c-6a3f-4c1e-9d1e-2f7d1d9c0a11") {
		t.Errorf("callbacks:\n%s", table)
	}

	if out := n.must("callback", "delete", otherID); strings.TrimSpace(out) != "deleted callback "+otherID {
		t.Errorf("callback delete: %q", out)
	}
	n.fails(1, "no callback "+otherID, "callback", "delete", otherID)
	n.fails(1, "http:// or https://", "callback", "add", "ftp://example.com/x")
	n.fails(2, "callback add wants <url>", "callback", "add")
	n.mustJSON(&list, "callbacks")
	if len(list) != 1 || list[0].ID != cb.ID {
		t.Errorf("after the delete: %+v", list)
	}
}
