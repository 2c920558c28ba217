package callbacks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/physarum-p2p/physarum/registry"
)

// The delivery headers (Standard Webhooks).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
	// UserAgent names the sender.
	UserAgent = "Physarum-Webhooks/1 (registry-service callbacks)"
)

// Sign returns a delivery's signature as the webhook-signature header
// carries it: "v1," and the base64 of HMAC-SHA256 over
// "<id>.<timestamp>.<body>" keyed with the secret's key
// (registry.DecodeSecret).
func Sign(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Delay is the wait before the next attempt after attempts failures in a
// row (attempts >= 1): schedule's entry for it, the last one once past
// its end, jittered by r (in [0, 1)) within ±20%. No failure, no wait.
func Delay(schedule []time.Duration, attempts int, r float64) time.Duration {
	if attempts <= 0 || len(schedule) == 0 {
		return 0
	}
	d := schedule[min(attempts, len(schedule))-1]
	return time.Duration(float64(d) * (0.8 + 0.4*r))
}

// jitter is Delay's randomness.
func jitter() float64 { return rand.Float64() } //nolint:gosec // spreading retries needs no secrecy

// maxAnswer bounds what is read of a receiver's answer (for the error
// message); the rest is discarded.
const maxAnswer = 4 << 10

// post delivers one event to a callback, once: nil for a 2xx answer.
func post(ctx context.Context, c *http.Client, rec callbackDef, e registry.Event, now time.Time) error {
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rec.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build the request: %w", err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", UserAgent)
	h.Set(HeaderID, e.ID)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign(rec.key, e.ID, ts, body))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode/100 == 2 {
		return nil
	}
	msg := strings.Join(strings.Fields(string(answer)), " ")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return fmt.Errorf("answered %s: %s", resp.Status, msg)
}
