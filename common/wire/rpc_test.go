package wire_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"go.uber.org/goleak"

	"github.com/physarum-p2p/physarum/common/p2ptest"
	"github.com/physarum-p2p/physarum/common/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, p2ptest.IgnoreLeaks()...)
}

const echoProto protocol.ID = "/physarum/test-echo/1.0.0"

type echoReq struct {
	Text  string
	Panic bool
}

func startEcho(t *testing.T, timeout time.Duration) (server, client *p2ptest.Node, codes chan string) {
	t.Helper()
	nodes := p2ptest.Network(t, 2, nil)
	server, client = nodes[0], nodes[1]
	codes = make(chan string, 100)
	srv := wire.NewServer(server.Host(), p2ptest.Logger(t), func(_ protocol.ID, code string, _ time.Duration) {
		codes <- code
	})
	t.Cleanup(srv.Close)
	srv.Handle(echoProto, func(ctx context.Context, req wire.Request) (any, error) {
		var r echoReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		if r.Panic {
			panic("handler bug")
		}
		if r.Text == "" {
			return nil, wire.Errorf(wire.CodeBadRequest, "empty text")
		}
		return r, nil
	}, wire.HandleOptions{MaxRequest: 1024, Timeout: timeout})
	return server, client, codes
}

func TestCallRoundTripAndStructuredErrors(t *testing.T) {
	server, client, _ := startEcho(t, time.Second)
	var out echoReq
	if err := wire.Call(t.Context(), client.Host(), server.ID(), echoProto, echoReq{Text: "hi"}, &out, wire.CallOptions{}); err != nil {
		t.Fatal(err)
	}
	if out.Text != "hi" {
		t.Fatalf("echo = %q", out.Text)
	}
	err := wire.Call(t.Context(), client.Host(), server.ID(), echoProto, echoReq{}, &out, wire.CallOptions{})
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeBadRequest || we.Message != "empty text" {
		t.Fatalf("Call = %v, want bad_request: empty text", err)
	}
	err = wire.Call(t.Context(), client.Host(), server.ID(), echoProto, map[string]any{"Txet": "typo"}, &out, wire.CallOptions{})
	if wire.CodeOf(err) != wire.CodeBadRequest || !strings.Contains(err.Error(), "Txet") {
		t.Fatalf("unknown field: %v, want bad_request naming the field", err)
	}
}

// rawExchange writes raw bytes on a new stream and returns what the server
// answers (nil with an error when it resets the stream).
func rawExchange(t *testing.T, client, server *p2ptest.Node, raw []byte, closeWrite bool) (*wire.Error, error) {
	t.Helper()
	st, err := client.Host().NewStream(t.Context(), server.ID(), echoProto)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Write(raw); err != nil {
		return nil, err
	}
	if closeWrite {
		_ = st.CloseWrite()
	}
	b, err := wire.ReadFrame(st, wire.DefaultMaxFrame)
	if err != nil {
		return nil, err
	}
	err = wire.DecodeResponse(b, nil)
	var we *wire.Error
	if !errors.As(err, &we) {
		t.Fatalf("response %s is not an error", b)
	}
	return we, nil
}

func header(version byte, n uint32) []byte {
	b := []byte{version, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], n)
	return b
}

func TestServerRefusesBadInputAndKeepsServing(t *testing.T) {
	server, client, codes := startEcho(t, 300*time.Millisecond)
	cases := []struct {
		name       string
		raw        []byte
		closeWrite bool
		want       string
	}{
		{"oversized frame", header(wire.Version, 1<<30), false, wire.CodeTooLarge},
		{"truncated frame", append(header(wire.Version, 100), "{\"Te"...), true, wire.CodeBadRequest},
		{"garbage", []byte("\x00\x01garbage"), true, wire.CodeBadRequest},
		{"malformed JSON", append(header(wire.Version, 5), "{bad}"...), false, wire.CodeBadRequest},
		{"handler panic", append(header(wire.Version, 14), `{"Panic":true}`...), false, wire.CodeInternal},
		{"slow writer", header(wire.Version, 100), false, wire.CodeTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			we, err := rawExchange(t, client, server, c.raw, c.closeWrite)
			if err != nil {
				t.Fatalf("no structured answer: %v", err)
			}
			if we.Code != c.want {
				t.Fatalf("answer %v, want code %s", we, c.want)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("answered after %s; the deadline is 300ms", took)
			}
			if got := <-codes; got != c.want {
				t.Fatalf("observer saw %q, want %q", got, c.want)
			}
		})
	}
	var out echoReq
	if err := wire.Call(t.Context(), client.Host(), server.ID(), echoProto, echoReq{Text: "still here"}, &out, wire.CallOptions{}); err != nil {
		t.Fatalf("server stopped serving after bad input: %v", err)
	}
}

func TestCallGivesUpAtItsDeadline(t *testing.T) {
	nodes := p2ptest.Network(t, 2, nil)
	silent := make(chan struct{})
	nodes[0].Host().SetStreamHandler(echoProto, func(s network.Stream) {
		<-silent // never answers until the test ends
		_ = s.Reset()
	})
	defer close(silent)
	start := time.Now()
	err := wire.Call(t.Context(), nodes[1].Host(), nodes[0].ID(), echoProto, echoReq{Text: "x"}, nil, wire.CallOptions{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call = %v, want a deadline error", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Call returned after %s", took)
	}
}

func TestCallRefusesOversizedResponse(t *testing.T) {
	server, client, _ := startEcho(t, time.Second)
	err := wire.Call(t.Context(), client.Host(), server.ID(), echoProto, echoReq{Text: strings.Repeat("y", 500)}, nil, wire.CallOptions{MaxResponse: 100})
	if !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("Call = %v, want ErrFrameTooLarge", err)
	}
}

func TestDecodeTakesExactlyOneValue(t *testing.T) {
	type op struct{ Op string }
	for body, ok := range map[string]bool{
		`{"Op":"get"}`:                 true,
		"{\"Op\":\"get\"}\n  ":         true,
		`{"Op":"get"} {"Op":"delete"}`: false,
		`{"Op":"get"}x`:                false,
		`{"Op":"get","Other":1}`:       false,
	} {
		var v op
		err := wire.Request{Body: []byte(body)}.Decode(&v)
		if (err == nil) != ok {
			t.Errorf("Decode(%q) = %v, want ok %v", body, err, ok)
		}
		if err != nil && wire.CodeOf(err) != wire.CodeBadRequest {
			t.Errorf("Decode(%q): code %q, want bad_request", body, wire.CodeOf(err))
		}
	}
}
