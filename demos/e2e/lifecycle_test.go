package e2e

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/common/eventually"
	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/registry"
)

// receiver is a webhook endpoint that checks each delivery's signature as
// a Standard Webhooks receiver does, and keeps the events.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	events []registry.Event
	bad    []string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := verify(r.secret, req.Header, body); err != nil {
		r.bad = append(r.bad, err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var ev registry.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		r.bad = append(r.bad, "not an event: "+string(body))
	} else {
		r.events = append(r.events, ev)
	}
	w.WriteHeader(http.StatusNoContent)
}

// verify checks a delivery the way the reference docs show a receiver
// doing it: HMAC-SHA256 over "id.timestamp.body" with the secret's key.
func verify(secret string, h http.Header, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || secret == "" {
		return fmt.Errorf("no usable secret %q", secret)
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("delivery %s: signature %q does not verify", id, h.Get("webhook-signature"))
}

func (r *receiver) got() ([]registry.Event, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), slices.Clone(r.bad)
}

// states are the instance states the events carry, consecutive repeats
// folded.
func states(evs []registry.Event) []string {
	var out []string
	for _, ev := range evs {
		var o struct {
			State  string `json:"state"`
			StateI string `json:"State"`
		}
		if json.Unmarshal(ev.Object, &o) != nil {
			continue
		}
		s := o.State
		if ev.Topic == registry.TopicInstance {
			s = o.StateI
		}
		if ev.Type == registry.EventLost {
			s = registry.StateLost
		}
		if s != "" && (len(out) == 0 || out[len(out)-1] != s) {
			out = append(out, s)
		}
	}
	return out
}

// isSubsequence reports whether want appears in got, in order.
func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func launched(t *testing.T, base, id string) registry.LaunchedInstance {
	t.Helper()
	var li registry.LaunchedInstance
	if err := json.Unmarshal(mustAPI(t, "GET", base+"/instances/"+id, nil), &li); err != nil {
		t.Fatal(err)
	}
	return li
}

func waitLaunched(t *testing.T, base, id, state string) registry.LaunchedInstance {
	t.Helper()
	var li registry.LaunchedInstance
	eventually.Succeeds(t, 45*time.Second, func() error {
		if li = launched(t, base, id); li.State != state {
			return fmt.Errorf("instance %s is %s (%s), want %s", id, li.State, li.Message, state)
		}
		return nil
	})
	return li
}

// answers dials every TCP address of a multiaddr list.
func answers(addrs []string) error {
	if len(addrs) == 0 {
		return fmt.Errorf("no address")
	}
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return err
		}
		ip, err1 := m.ValueForProtocol(ma.P_IP4)
		port, err2 := m.ValueForProtocol(ma.P_TCP)
		if err1 != nil || err2 != nil {
			continue
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), 2*time.Second)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	}
	return fmt.Errorf("no TCP address in %v", addrs)
}

// serviceAnswers asks the service itself, on the host and port the
// lifecycle API gives, for its greeting.
func serviceAnswers(a registry.InstanceAddrs) error {
	if a.Ports == nil || a.Host == "" {
		return fmt.Errorf("no host and ports in %+v", a)
	}
	host := a.Host
	if host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://%s/", net.JoinHostPort(host, fmt.Sprint(a.Ports.Service))))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(b), "hello from") {
		return fmt.Errorf("%d %q", resp.StatusCode, b)
	}
	return nil
}

// readEvents follows /v1/events from index on topics until ctx ends.
func readEvents(ctx context.Context, url string, out chan<- registry.Event) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev registry.Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type != registry.EventHeartbeat {
			out <- ev
		}
	}
	return sc.Err()
}

func TestLaunchedInstanceLifecycleWithCallbacksAndEvents(t *testing.T) {
	n := newNetwork(t)
	n.registry()
	node1 := n.namedAllocator("n1", "")
	n.addHello()
	base := n.api
	rcv := newReceiver(t)

	// A reader of the event stream, from now on, for the whole test.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream := make(chan registry.Event, 1024)
	go func() { _ = readEvents(ctx, base+"/v1/events?topic=instance:hello&topic=launched", stream) }()

	const id = "6f1c2a9e-3b7d-4c1e-9a4f-0d2e8b7c5a13"
	code, out := api(t, "POST", base+"/instances", map[string]string{"uuid": id, "service": "hello", "callback": rcv.srv.URL})
	if code != http.StatusCreated {
		t.Fatalf("POST /instances: %d %s", code, out)
	}
	var li registry.LaunchedInstance
	if err := json.Unmarshal(out, &li); err != nil || li.UUID != id || li.State != registry.StatePending || li.CallbackSecret == "" {
		t.Fatalf("launch answered %s (%v)", out, err)
	}
	rcv.mu.Lock()
	rcv.secret = li.CallbackSecret
	rcv.mu.Unlock()
	if code, out := api(t, "POST", base+"/instances", map[string]string{"uuid": id, "service": "hello"}); code != http.StatusConflict {
		t.Errorf("a second launch with the same UUID: %d %s, want 409", code, out)
	}

	li = waitLaunched(t, base, id, registry.StateRunning)
	if li.Node != "n1" || li.Addrs.PeerID == "" {
		t.Errorf("running instance: node %q, addresses %+v", li.Node, li.Addrs)
	}
	if err := answers(li.Addrs.Multiaddrs); err != nil {
		t.Errorf("the instance's addresses %v do not answer: %v", li.Addrs.Multiaddrs, err)
	}
	if err := serviceAnswers(li.Addrs); err != nil {
		t.Errorf("the instance's service port: %v", err)
	}
	eventually.Succeeds(t, 20*time.Second, func() error {
		evs, bad := rcv.got()
		if len(bad) > 0 {
			return fmt.Errorf("bad deliveries: %v", bad)
		}
		if got := states(evs); !isSubsequence([]string{"pending", "starting", "running"}, got) {
			return fmt.Errorf("callback states so far %v", got)
		}
		return nil
	})

	// Actions do what they say, and each is seen.
	if code, out := api(t, "POST", base+"/instances/"+id+"/actions", map[string]string{"action": "explode"}); code != 400 || !strings.Contains(string(out), "start, stop, reboot") {
		t.Errorf("action explode: %d %s; want 400 listing start, stop, reboot", code, out)
	}
	mustAPI(t, "POST", base+"/instances/"+id+"/actions", map[string]string{"action": "stop"})
	waitLaunched(t, base, id, registry.StateStopped)
	eventually.True(t, 20*time.Second, "the stopped instance's processes gone", func() bool { return len(pidsWithEnv(instenv.InstanceID+"="+id)) == 0 })

	mustAPI(t, "POST", base+"/instances/"+id+"/actions", map[string]string{"action": "start"})
	li = waitLaunched(t, base, id, registry.StateRunning)
	if err := answers(li.Addrs.Multiaddrs); err != nil {
		t.Errorf("after start, %v do not answer: %v", li.Addrs.Multiaddrs, err)
	}
	before := pidsWithEnv(instenv.InstanceID + "=" + id)
	mustAPI(t, "POST", base+"/instances/"+id+"/actions", map[string]string{"action": "reboot"})
	li = waitLaunched(t, base, id, registry.StateRunning)
	after := pidsWithEnv(instenv.InstanceID + "=" + id)
	if li.Restarts < 1 || len(after) == 0 || slices.ContainsFunc(after, func(p int) bool { return slices.Contains(before, p) }) {
		t.Errorf("reboot: restarts %d, processes %v before and %v after; want new processes", li.Restarts, before, after)
	}
	eventually.Succeeds(t, 20*time.Second, func() error {
		evs, _ := rcv.got()
		if got := states(evs); !isSubsequence([]string{"running", "stopped", "running", "stopping", "running"}, got) {
			return fmt.Errorf("callback states so far %v", got)
		}
		return nil
	})

	// Its allocator dies and stays down: lost, on the stream and at the
	// callback, once the lease has run out.
	node1.Kill()
	sawLost := false
	deadline := time.After(30 * time.Second)
	for !sawLost {
		select {
		case ev := <-stream:
			sawLost = ev.Type == registry.EventLost && ev.Key == "hello/"+id
		case <-deadline:
			t.Fatal("no lost event on the stream within 30 s of the allocator's death")
		}
	}
	eventually.Succeeds(t, 30*time.Second, func() error {
		evs, _ := rcv.got()
		if !slices.ContainsFunc(evs, func(ev registry.Event) bool { return ev.Type == registry.EventLost }) {
			return fmt.Errorf("callback has no lost event yet (%v)", states(evs))
		}
		return nil
	})
	if li := waitLaunched(t, base, id, registry.StateLost); !strings.Contains(li.Message, "n1") {
		t.Errorf("lost instance's message %q does not name its node", li.Message)
	}
	// Forgotten: the callback hears the deletion, then goes.
	cbID := li.Callback
	mustAPI(t, "DELETE", base+"/instances/"+id, nil)
	eventually.Succeeds(t, 30*time.Second, func() error {
		evs, _ := rcv.got()
		if !slices.ContainsFunc(evs, func(ev registry.Event) bool {
			return ev.Topic == registry.TopicLaunched && ev.Type == registry.EventDeleted && ev.Key == id
		}) {
			return fmt.Errorf("callback has not heard of the deletion")
		}
		if code, out := api(t, "GET", base+"/callbacks/"+cbID, nil); code != http.StatusNotFound {
			return fmt.Errorf("the forgotten instance's callback %s: %d %s", cbID, code, out)
		}
		return nil
	})
	if code, _ := api(t, "GET", base+"/instances/"+id, nil); code != http.StatusNotFound {
		t.Errorf("forgotten instance: GET answers %d, want 404", code)
	}
	// Every delivery verified, none twice.
	evs, bad := rcv.got()
	if len(bad) > 0 {
		t.Errorf("bad deliveries: %v", bad)
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if seen[ev.ID] {
			t.Errorf("event %s delivered twice", ev.ID)
		}
		seen[ev.ID] = true
	}
}
