package images

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/physarum-p2p/physarum/common/wire"
)

// Protocol is the image transfer protocol. A stream carries one request
// frame (wire framing, JSON), one reply frame (wire's envelope), then, for a
// transfer, the image as chunks: a four-byte big-endian length and that
// many bytes of the `docker save` stream, ended by a zero length and a
// trailer frame that gives the total. The receiver knows a complete stream
// from a cut one by the trailer, never by the stream's end alone.
const Protocol protocol.ID = "/physarum/image/1.0.0"

// Operations a request names.
const (
	// OpGet asks the peer for an image it holds: the peer replies, then
	// sends the image.
	OpGet = "get"
	// OpPut offers the peer an image: the peer replies (Have when it holds
	// it already), the sender sends the image, and the peer replies again
	// once it has loaded and checked it.
	OpPut = "put"
	// OpHas asks whether the peer holds an image (Reply.Have); nothing
	// else follows.
	OpHas = "has"
)

// Limits of the protocol.
const (
	// maxRequest bounds a request frame: an operation and an image ID.
	maxRequest = 1 << 10
	// maxReply bounds a reply or trailer frame.
	maxReply = 4 << 10
	// chunkSize is the largest chunk sent; a reader refuses larger ones.
	chunkSize = 256 << 10
	// DefaultMaxSize is the largest image stream accepted by default.
	DefaultMaxSize int64 = 4 << 30
	// DefaultIdleTimeout is how long a transfer may make no progress.
	DefaultIdleTimeout = 30 * time.Second
	// requestTimeout bounds reading a request and its first reply.
	requestTimeout = 10 * time.Second
)

// Request is the first frame of a stream.
type Request struct {
	Op    string `json:"op"`
	Image string `json:"image"`
}

// Reply is the answer to a request (in wire's envelope, whose error
// carries a refusal).
type Reply struct {
	// Have: the peer holds the image already (a put needs no data).
	Have bool `json:"have,omitempty"`
	// Size is the image's size as the holder's daemon reports it (an
	// estimate of the stream, for progress); 0 when unknown.
	Size int64 `json:"size,omitempty"`
	// Loaded is the image ID a put loaded (the second reply of a put).
	Loaded string `json:"loaded,omitempty"`
}

// trailer ends the chunks.
type trailer struct {
	Bytes int64 `json:"bytes"`
}

// idPattern is what an image ID looks like: the digest of its config.
var idPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidID reports whether id is an image ID (sha256:<64 hex digits>): only
// images registered by ID travel, since only an ID says which image a
// holder must send and lets the receiver check it got that one.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// DecodeRequest decodes and checks a request frame's payload: an error
// names what is wrong, as a *wire.Error with code bad_request.
func DecodeRequest(b []byte) (Request, error) {
	var r Request
	if err := (wire.Request{Body: b}).Decode(&r); err != nil {
		return Request{}, err
	}
	switch r.Op {
	case OpGet, OpPut, OpHas:
	case "":
		return Request{}, wire.Errorf(wire.CodeBadRequest, "image request without op (want %q, %q or %q)", OpGet, OpPut, OpHas)
	default:
		return Request{}, wire.Errorf(wire.CodeBadRequest, "image request: unknown op %.40q (want %q, %q or %q)", r.Op, OpGet, OpPut, OpHas)
	}
	if !ValidID(r.Image) {
		return Request{}, wire.Errorf(wire.CodeBadRequest, "image request: %.80q is not an image ID (want sha256:<64 hex digits>)", r.Image)
	}
	return r, nil
}

// Errors of the chunk stream; check them with errors.Is.
var (
	// ErrTruncated: the stream ended before its trailer, or the trailer
	// disagrees with what came.
	ErrTruncated = errors.New("image stream truncated")
	// ErrTooLarge: the stream passed the receiver's size limit.
	ErrTooLarge = errors.New("image stream too large")
)

// chunkWriter cuts what is written into chunks. Close writes the end and
// the trailer; it does not close w.
type chunkWriter struct {
	w     *bufio.Writer
	bytes int64
	// beforeWrite runs before each chunk goes out: it moves the stream's
	// write deadline on, so that only a stalled transfer times out.
	beforeWrite func()
}

func newChunkWriter(w io.Writer, beforeWrite func()) *chunkWriter {
	if beforeWrite == nil {
		beforeWrite = func() {}
	}
	return &chunkWriter{w: bufio.NewWriterSize(w, chunkSize+4), beforeWrite: beforeWrite}
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		part := p[:min(len(p), chunkSize)]
		c.beforeWrite()
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(part)))
		if _, err := c.w.Write(hdr[:]); err != nil {
			return n, err
		}
		if _, err := c.w.Write(part); err != nil {
			return n, err
		}
		n += len(part)
		c.bytes += int64(len(part))
		p = p[len(part):]
	}
	return n, nil
}

// ReadFrom lets io.Copy hand over full chunks without a second buffer.
func (c *chunkWriter) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, chunkSize)
	var total int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

// Close ends the chunks and writes the trailer.
func (c *chunkWriter) Close() error {
	c.beforeWrite()
	if _, err := c.w.Write([]byte{0, 0, 0, 0}); err != nil {
		return err
	}
	b, err := json.Marshal(trailer{Bytes: c.bytes})
	if err != nil {
		return err
	}
	if err := wire.WriteFrame(c.w, b, maxReply); err != nil {
		return err
	}
	return c.w.Flush()
}

// chunkReader reads what a chunkWriter wrote. It returns io.EOF only after
// the end and a trailer that matches what came; a stream cut short is
// ErrTruncated, one past max bytes ErrTooLarge.
type chunkReader struct {
	r     *bufio.Reader
	max   int64
	bytes int64
	left  int // of the current chunk
	done  bool
	// beforeRead runs before each chunk header is read (the read deadline).
	beforeRead func()
}

func newChunkReader(r io.Reader, max int64, beforeRead func()) *chunkReader {
	if beforeRead == nil {
		beforeRead = func() {}
	}
	return &chunkReader{r: bufio.NewReaderSize(r, 64<<10), max: max, beforeRead: beforeRead}
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
		if c.done {
			return 0, io.EOF
		}
	}
	n, err := c.r.Read(p[:min(len(p), c.left)])
	c.left -= n
	c.bytes += int64(n)
	if err != nil {
		return n, truncated(err)
	}
	return n, nil
}

// next reads a chunk header, or the end and the trailer.
func (c *chunkReader) next() error {
	c.beforeRead()
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return truncated(err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > chunkSize {
		return fmt.Errorf("chunk of %d bytes (limit %d): %w", n, chunkSize, ErrTruncated)
	}
	if n > 0 {
		if c.bytes+int64(n) > c.max {
			return fmt.Errorf("more than %d bytes: %w", c.max, ErrTooLarge)
		}
		c.left = int(n)
		return nil
	}
	b, err := wire.ReadFrame(c.r, maxReply)
	if err != nil {
		return fmt.Errorf("trailer: %w: %w", ErrTruncated, err)
	}
	var t trailer
	if err := json.Unmarshal(b, &t); err != nil {
		return fmt.Errorf("trailer: %w: %w", ErrTruncated, err)
	}
	if t.Bytes != c.bytes {
		return fmt.Errorf("trailer says %d bytes, %d came: %w", t.Bytes, c.bytes, ErrTruncated)
	}
	c.done = true
	return nil
}

// truncated maps an end of stream inside the chunks to ErrTruncated, and
// keeps other errors (a deadline, a reset) with it.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("stream ended early: %w", ErrTruncated)
	}
	return fmt.Errorf("%w: %w", ErrTruncated, err)
}
