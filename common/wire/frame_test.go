package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func frame(version byte, declared uint32, payload []byte) []byte {
	b := []byte{version, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], declared)
	return append(b, payload...)
}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range []string{"", "{}", strings.Repeat("x", 1000)} {
		if err := WriteFrame(&buf, []byte(p), 1000); err != nil {
			t.Fatalf("write %d bytes: %v", len(p), err)
		}
	}
	for _, want := range []string{"", "{}", strings.Repeat("x", 1000)} {
		got, err := ReadFrame(&buf, 1000)
		if err != nil || string(got) != want {
			t.Fatalf("read = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ReadFrame(&buf, 1000); !errors.Is(err, io.EOF) {
		t.Fatalf("read past the last frame = %v, want io.EOF", err)
	}
}

func TestReadFrameRejectsBadFrames(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"oversized", frame(Version, 101, nil), ErrFrameTooLarge},
		{"huge declared length", frame(Version, 0xffffffff, []byte("x")), ErrFrameTooLarge},
		{"truncated header", []byte{Version, 0, 0}, ErrTruncated},
		{"truncated payload", frame(Version, 10, []byte("abc")), ErrTruncated},
		{"unknown version", frame(9, 2, []byte("{}")), ErrBadVersion},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), ErrBadVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(c.in), 100)
			if !errors.Is(err, c.want) {
				t.Fatalf("ReadFrame = %v, want %v", err, c.want)
			}
		})
	}
}

func TestWriteFrameRefusesOversizedPayload(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, make([]byte, 11), 10); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("WriteFrame = %v, want ErrFrameTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("wrote %d bytes of a refused frame", buf.Len())
	}
}

func TestReadJSONMalformedIsBadRequest(t *testing.T) {
	var v map[string]any
	err := ReadJSON(bytes.NewReader(frame(Version, 5, []byte("{bad}"))), &v, 100)
	if CodeOf(err) != CodeBadRequest {
		t.Fatalf("ReadJSON = %v, want a bad_request error", err)
	}
}

func TestErrorMatchesByCode(t *testing.T) {
	err := Errorf(CodeNotFound, "service %q", "x")
	if !errors.Is(err, &Error{Code: CodeNotFound}) {
		t.Fatal("errors.Is does not match by code")
	}
	if errors.Is(err, &Error{Code: CodeForbidden}) {
		t.Fatal("errors.Is matched another code")
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader: it must never
// panic or allocate past the limit, and what it accepts must round-trip.
func FuzzReadFrame(f *testing.F) {
	f.Add(frame(Version, 2, []byte("{}")))
	f.Add(frame(Version, 0xffffffff, nil))
	f.Add([]byte{Version})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 4096
		got, err := ReadFrame(bytes.NewReader(in), max)
		if err != nil {
			return
		}
		if len(got) > max {
			t.Fatalf("accepted %d bytes over a limit of %d", len(got), max)
		}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, got, max); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), in[:headerSize+len(got)]) {
			t.Fatal("frame does not round-trip")
		}
	})
}

// FuzzDecodeResponse feeds arbitrary payloads to the client's response
// decoder: never a panic, and every failure is an error value.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"result":{"a":1}}`))
	f.Add([]byte(`{"error":{"code":"not_found","message":"x"}}`))
	f.Add([]byte(`{"error":{}}`))
	f.Add([]byte(`{"result":"x"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var v struct {
			A int
			B []string
		}
		err := DecodeResponse(in, &v)
		var we *Error
		if errors.As(err, &we) && we.Code == "" {
			t.Fatal("structured error without a code")
		}
	})
}
