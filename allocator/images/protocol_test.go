package images

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/physarum-p2p/physarum/common/wire"
)

func chunked(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := newChunkWriter(&buf, nil)
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestChunksRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, 3*chunkSize + 17} {
		data := bytes.Repeat([]byte{'x', 'y', 'z'}, size/3+1)[:size]
		got, err := io.ReadAll(newChunkReader(bytes.NewReader(chunked(t, data)), DefaultMaxSize, nil))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("size %d: got %d bytes back, not the same", size, len(got))
		}
	}
}

func TestChunkReaderRefusesCutStreams(t *testing.T) {
	data := bytes.Repeat([]byte("image"), 100_000)
	whole := chunked(t, data)
	for _, cut := range []int{0, 3, 4, 1000, len(whole) - 10, len(whole) - 1} {
		_, err := io.ReadAll(newChunkReader(bytes.NewReader(whole[:cut]), DefaultMaxSize, nil))
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("cut at %d of %d: err %v, want ErrTruncated", cut, len(whole), err)
		}
	}
}

func TestChunkReaderRefusesALyingTrailer(t *testing.T) {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0, 3})
	buf.WriteString("abc")
	buf.Write([]byte{0, 0, 0, 0})
	if err := wire.WriteFrame(&buf, []byte(`{"bytes":4}`), maxReply); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(newChunkReader(&buf, DefaultMaxSize, nil))
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "trailer says 4 bytes, 3 came") {
		t.Fatalf("err %v, want the trailer's disagreement", err)
	}
}

func TestChunkReaderRefusesOversizedStreamsAndChunks(t *testing.T) {
	data := bytes.Repeat([]byte{1}, 2*chunkSize)
	_, err := io.ReadAll(newChunkReader(bytes.NewReader(chunked(t, data)), chunkSize+1, nil))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("stream past the limit: err %v, want ErrTooLarge", err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], chunkSize+1)
	_, err = io.ReadAll(newChunkReader(bytes.NewReader(hdr[:]), DefaultMaxSize, nil))
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("chunk past the limit: err %v", err)
	}
}

func TestDecodeRequest(t *testing.T) {
	id := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		body, err string
	}{
		{`{"op":"get","image":"` + id + `"}`, ""},
		{`{"op":"put","image":"` + id + `"}`, ""},
		{`{"op":"has","image":"` + id + `"}`, ""},
		{`{"op":"delete","image":"` + id + `"}`, "unknown op"},
		{`{"image":"` + id + `"}`, "without op"},
		{`{"op":"get","image":"alpine:latest"}`, "not an image ID"},
		{`{"op":"get","image":"sha256:ABC"}`, "not an image ID"},
		{`{"op":"get","image":"` + id + `","x":1}`, "unknown field"},
		{`{"op":"get"`, "malformed"},
		{`garbage`, "malformed"},
	} {
		r, err := DecodeRequest([]byte(tc.body))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.err == "" && r.Image != id:
			t.Errorf("%s: image %q", tc.body, r.Image)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: err %v, want %q", tc.body, err, tc.err)
		case tc.err != "" && wire.CodeOf(err) != wire.CodeBadRequest:
			t.Errorf("%s: code %q, want bad_request", tc.body, wire.CodeOf(err))
		}
	}
}

// FuzzDecodeRequest: no input panics, and what is accepted is a valid
// operation on a valid ID.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"get","image":"sha256:` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte(`{"op":"put","image":"sha256:` + strings.Repeat("f", 64) + `"}`))
	f.Add([]byte(`{"op":"get","image":"x"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if wire.CodeOf(err) != wire.CodeBadRequest {
				t.Fatalf("error without bad_request: %v", err)
			}
			return
		}
		if (r.Op != OpGet && r.Op != OpPut && r.Op != OpHas) || !ValidID(r.Image) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

// FuzzChunkReader: no input panics or reads past the limit.
func FuzzChunkReader(f *testing.F) {
	var buf bytes.Buffer
	w := newChunkWriter(&buf, nil)
	_, _ = w.Write([]byte("hello image"))
	_ = w.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 5, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := io.Copy(io.Discard, newChunkReader(bytes.NewReader(b), 1<<16, nil))
		if n > 1<<16 {
			t.Fatalf("read %d bytes past the limit", n)
		}
		if err == nil && n > int64(len(b)) {
			t.Fatalf("read %d bytes from %d", n, len(b))
		}
	})
}

// FuzzDecodeState: the keeper's state file never panics its parser, and
// what it accepts names image IDs only.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"images":{"sha256:` + strings.Repeat("1", 64) + `":"2026-12-07T10:00:00Z"}}`))
	f.Add([]byte(`{"images":{"alpine":"0001-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		for id := range st.Images {
			if !ValidID(id) {
				t.Fatalf("accepted %q", id)
			}
		}
	})
}

func TestDecide(t *testing.T) {
	id := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		ref, policy, want string
	}{
		{id, PullNever, ActionFetch},
		{id, PullMissing, ActionFetch},
		{"registry.example.com/app@sha256:" + strings.Repeat("1", 64), PullMissing, ActionPull},
		{"registry.example.com/app:1", PullNever, ActionRefuse},
		{"localhost:5000/app:1", PullMissing, ActionPull},
		{"localhost/app", PullMissing, ActionPull},
		{"library/app:1", PullMissing, ActionRefuse}, // Docker Hub: no registry named
		{"app:1", PullMissing, ActionRefuse},
	} {
		if got := Decide(tc.ref, tc.policy); got != tc.want {
			t.Errorf("Decide(%q, %q) = %s, want %s", tc.ref, tc.policy, got, tc.want)
		}
	}
	if err := refusal("registry.example.com/app:1", PullNever); !strings.Contains(err.Error(), "-pull missing") {
		t.Errorf("refusal under never does not say how to allow pulls: %v", err)
	}
}
