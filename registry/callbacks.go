package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Callbacks (SPEC.md section 12, seed 003): webhooks that receive, signed,
// every event of one launched instance, one service, or everything. The
// registry protocol carries them with these operations; Request.Callback
// holds a callback to add, Request.ID names one, Response.Callbacks
// answers.
const (
	OpCallbackAdd    = "callback.add"
	OpCallbackList   = "callback.list"
	OpCallbackGet    = "callback.get"
	OpCallbackDelete = "callback.delete"
)

// Limits and forms of a callback's fields.
const (
	// MaxCallbackURL bounds a callback's URL.
	MaxCallbackURL = 2048
	// SecretPrefix starts a callback's secret, as Standard Webhooks'
	// secrets do; base64 of the key follows.
	SecretPrefix = "whsec_"
	// MinSecretKey and MaxSecretKey bound a secret's key, in bytes.
	MinSecretKey = 16
	MaxSecretKey = 64
	// CallbackIDPrefix starts a callback's ID ("cb_" and 16 hexadecimal
	// digits).
	CallbackIDPrefix = "cb_"
)

var callbackIDRE = regexp.MustCompile(`^cb_[0-9a-f]{16}$`)

// ValidateCallbackID checks a callback's ID: "cb_" and 16 hexadecimal
// digits.
func ValidateCallbackID(id string) error {
	if !callbackIDRE.MatchString(id) {
		return invalid("callback id", "%.80q: want cb_ and 16 hexadecimal digits, as the registry assigns", id)
	}
	return nil
}

// ValidateCallbackURL checks a callback's URL: absolute http or https
// with a host, at most MaxCallbackURL bytes, no user information (a
// password would show wherever the callback is listed).
func ValidateCallbackURL(s string) error {
	if s == "" {
		return invalid("url", "missing: want the http:// or https:// URL to POST events to")
	}
	if len(s) > MaxCallbackURL {
		return invalid("url", "%d bytes (at most %d)", len(s), MaxCallbackURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return invalid("url", "%.80q: %v", s, stripURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalid("url", "%.80q: want an http:// or https:// URL", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return invalid("url", "%.80q: no host", s)
	}
	if u.User != nil {
		return invalid("url", "%.80q: user information in a callback URL is not allowed (it would be shown); authenticate deliveries by their signature", s)
	}
	return nil
}

// stripURLError keeps url.Parse's reason without the URL it quotes.
func stripURLError(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

// DecodeSecret checks a callback's secret ("whsec_" and the standard
// base64 of MinSecretKey to MaxSecretKey bytes) and returns its key, what
// deliveries are signed with.
func DecodeSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, invalid("secret", "want %s and the base64 of %d to %d random bytes (or no secret: one is generated)", SecretPrefix, MinSecretKey, MaxSecretKey)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, invalid("secret", "the part after %s is not standard base64", SecretPrefix)
	}
	if len(key) < MinSecretKey || len(key) > MaxSecretKey {
		return nil, invalid("secret", "a key of %d bytes: want %d to %d", len(key), MinSecretKey, MaxSecretKey)
	}
	return key, nil
}

// ValidateCallback checks what a caller gives to add a callback: its URL,
// at most one of Instance (a UUID, lower-cased here) and Service, and its
// secret when given. Fields the registry sets (ID, state) are ignored.
func ValidateCallback(c *Callback) error {
	if err := ValidateCallbackURL(c.URL); err != nil {
		return err
	}
	if c.Instance != "" && c.Service != "" {
		return invalid("callback", "instance %.80q and service %.80q: give one of them, or neither for every event", c.Instance, c.Service)
	}
	if c.Instance != "" {
		u, err := NormalizeUUID(c.Instance)
		if err != nil {
			return err
		}
		c.Instance = u
	}
	if c.Service != "" {
		if err := ValidateName(c.Service); err != nil {
			return err
		}
	}
	if c.Secret != "" {
		if _, err := DecodeSecret(c.Secret); err != nil {
			return err
		}
	}
	return nil
}

// Selects reports whether a callback receives event e. The filter:
//
//   - for an instance (a launched instance's UUID): the launched
//     instance's own events (topic launched, key the UUID) and its
//     instance record's (topic instance, key "<service>/<uuid>", since a
//     launched instance's ID is its UUID), lost included;
//   - for a service: its definition's events (service:<svc>), its desired
//     counts' (desired:<svc>), its instances' (instance:<svc>), and the
//     launched instances of it (topic launched whose object's "service"
//     is svc);
//   - for neither: every event.
//
// Heartbeats are never delivered.
func (c Callback) Selects(e Event) bool {
	switch {
	case e.Type == EventHeartbeat:
		return false
	case c.Instance != "":
		return (e.Topic == TopicLaunched && e.Key == c.Instance) ||
			(e.Topic == TopicInstance && strings.HasSuffix(e.Key, "/"+c.Instance))
	case c.Service != "":
		if e.Matches([]string{TopicService + ":" + c.Service, TopicDesired + ":" + c.Service, TopicInstance + ":" + c.Service}) {
			return true
		}
		if e.Topic != TopicLaunched {
			return false
		}
		var o struct {
			Service string `json:"service"`
		}
		return json.Unmarshal(e.Object, &o) == nil && o.Service == c.Service
	}
	return true
}

// AddCallback registers a callback and returns it with its ID and, this
// once, its secret (generated when c.Secret is empty).
func (c *Client) AddCallback(ctx context.Context, cb Callback) (Callback, error) {
	if err := ValidateCallback(&cb); err != nil {
		return Callback{}, err
	}
	resp, err := c.call(ctx, Request{Op: OpCallbackAdd, Callback: &cb})
	if err != nil {
		return Callback{}, fmt.Errorf("add callback: %w", err)
	}
	if len(resp.Callbacks) != 1 {
		return Callback{}, fmt.Errorf("add callback: %d callbacks in the answer, want 1", len(resp.Callbacks))
	}
	return resp.Callbacks[0], nil
}

// ListCallbacks lists every callback with its delivery state (never a
// secret).
func (c *Client) ListCallbacks(ctx context.Context) ([]Callback, error) {
	resp, err := c.call(ctx, Request{Op: OpCallbackList})
	if err != nil {
		return nil, fmt.Errorf("list callbacks: %w", err)
	}
	if resp.Callbacks == nil {
		resp.Callbacks = []Callback{}
	}
	return resp.Callbacks, nil
}

// GetCallback reads one callback with its delivery state.
func (c *Client) GetCallback(ctx context.Context, id string) (Callback, error) {
	if err := ValidateCallbackID(id); err != nil {
		return Callback{}, err
	}
	resp, err := c.call(ctx, Request{Op: OpCallbackGet, ID: id})
	if err != nil {
		return Callback{}, fmt.Errorf("get callback %s: %w", id, err)
	}
	if len(resp.Callbacks) != 1 {
		return Callback{}, fmt.Errorf("get callback %s: %d callbacks in the answer, want 1", id, len(resp.Callbacks))
	}
	return resp.Callbacks[0], nil
}

// DeleteCallback removes a callback and its delivery state.
func (c *Client) DeleteCallback(ctx context.Context, id string) (string, error) {
	if err := ValidateCallbackID(id); err != nil {
		return "", err
	}
	resp, err := c.call(ctx, Request{Op: OpCallbackDelete, ID: id})
	if err != nil {
		return "", fmt.Errorf("delete callback %s: %w", id, err)
	}
	return resp.Message, nil
}

var _ Callbacks = (*Client)(nil)
