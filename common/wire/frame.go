package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the framing version written in the first byte of every frame.
const Version byte = 1

// headerSize is the version byte plus the four-byte length.
const headerSize = 5

// DefaultMaxFrame bounds a frame's payload when a protocol sets no limit of
// its own. Registry entries and deploy requests are a few KiB; 1 MiB leaves
// room for a list of several thousand services.
const DefaultMaxFrame = 1 << 20

// Sentinel errors of the framing layer; check them with errors.Is.
var (
	// ErrFrameTooLarge means a frame's declared length exceeds the limit.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrBadVersion means the first byte is not a framing version we speak.
	ErrBadVersion = errors.New("unsupported frame version")
	// ErrTruncated means the stream ended inside a frame.
	ErrTruncated = errors.New("truncated frame")
)

// WriteFrame writes payload as one frame. It refuses payloads above max so a
// sender learns of its mistake before the receiver resets the stream.
func WriteFrame(w io.Writer, payload []byte, max int) error {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	if len(payload) > max {
		return fmt.Errorf("write frame of %d bytes (limit %d): %w", len(payload), max, ErrFrameTooLarge)
	}
	buf := make([]byte, headerSize+len(payload))
	buf[0] = Version
	binary.BigEndian.PutUint32(buf[1:headerSize], uint32(len(payload)))
	copy(buf[headerSize:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame whose payload is at most max bytes. A clean end
// of stream before the first byte is io.EOF; an end inside the frame is
// ErrTruncated.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read frame header: %w", ErrTruncated)
		}
		return nil, err
	}
	if hdr[0] != Version {
		return nil, fmt.Errorf("read frame: version %d (want %d): %w", hdr[0], Version, ErrBadVersion)
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("read frame of %d bytes (limit %d): %w", n, max, ErrFrameTooLarge)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read frame payload (%d bytes): %w", n, ErrTruncated)
		}
		return nil, err
	}
	return payload, nil
}

// WriteJSON encodes v and writes it as one frame.
func WriteJSON(w io.Writer, v any, max int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	return WriteFrame(w, b, max)
}

// ReadJSON reads one frame and decodes it into v. Unknown fields are
// ignored so that newer peers can add fields without breaking older ones.
func ReadJSON(r io.Reader, v any, max int) error {
	b, err := ReadFrame(r, max)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &Error{Code: CodeBadRequest, Message: "malformed JSON: " + err.Error()}
	}
	return nil
}
