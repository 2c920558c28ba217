package callbacks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/physarum-p2p/physarum/registry-service/callbacks"
)

// verify checks a delivery as a receiver would, in a few lines of its
// own (the reference docs show the same): the secret's key, HMAC-SHA256
// over "<id>.<timestamp>.<body>", compared with each v1 signature of
// the header.
func verify(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if v, s, ok := strings.Cut(sig, ","); ok && v == "v1" && hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}

// The Standard Webhooks test vector: what a receiver's library checks
// is what Sign produces.
func TestSignMatchesTheStandardWebhooksVector(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	body := []byte(`{"test": 2432232314}`)
	got := callbacks.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body)
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,bm9wZQ== "+got)
	if !verify(secret, h, body) {
		t.Error("the receiver's check refuses Sign's signature")
	}
	for name, change := range map[string]func(){
		"body":      func() { body = []byte(`{"test": 2432232315}`) },
		"id":        func() { h.Set("webhook-id", "msg_other") },
		"timestamp": func() { h.Set("webhook-timestamp", "1614265331") },
	} {
		saved, savedH := body, h.Clone()
		change()
		if verify(secret, h, body) {
			t.Errorf("a changed %s still verifies", name)
		}
		body, h = saved, savedH
	}
}

func TestRetrySchedule(t *testing.T) {
	s := callbacks.DefaultSchedule
	want := []time.Duration{0, time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	for attempts, w := range want {
		if got := callbacks.Delay(s, attempts, 0.5); got != w {
			t.Errorf("after %d failures: %s, want %s", attempts, got, w)
		}
		lo, hi := callbacks.Delay(s, attempts, 0), callbacks.Delay(s, attempts, 0.999999)
		if lo != w*8/10 || hi < w*119/100 || hi > w*12/10 {
			t.Errorf("after %d failures: jitter from %s to %s, want ±20%% of %s", attempts, lo, hi, w)
		}
		// Jittered, each wait is still longer than the one before.
		if attempts > 1 && attempts <= len(s) && lo <= callbacks.Delay(s, attempts-1, 0.999999) {
			t.Errorf("after %d failures the shortest wait %s is not above the longest before it", attempts, lo)
		}
	}
	// Under PHYSARUM_FAST_TIMING the schedule is a tenth.
	fast := callbacks.New(nil, callbacks.Config{Fast: true}).Schedule()
	if fast[0] != 100*time.Millisecond || fast[len(fast)-1] != time.Minute {
		t.Errorf("fast schedule %v", fast)
	}
	// A day of failures: 1 s, 5 s, 30 s, 2 min, then every 10 min.
	var total time.Duration
	n := 0
	for total < callbacks.DefaultDisableAfter {
		n++
		total += callbacks.Delay(s, n, 0.5)
	}
	if n < 140 || n > 150 {
		t.Errorf("%d attempts in a day, want about 147", n)
	}
}
