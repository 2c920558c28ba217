package forward

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/physarum-p2p/physarum/common/wire"
)

// Messages cross a stream in HTTP/1.1 wire format. net/http reads them
// (http.ReadRequest, http.ReadResponse); this file writes them, because
// Request.Write and Response.Write add headers of their own (User-Agent),
// allocate a buffer per call and do not flush between the chunks of a
// streamed response.

const (
	// copyBufSize is the unit of every body copy: one read, one stream
	// write, which yamux sends as one frame (of at most 64 KiB), sealed as
	// one Noise message or four TLS records: fewer, larger writes cost
	// fewer syscalls.
	copyBufSize = 60 << 10
	// writeBufSize buffers a message head, and a small body with it, so that
	// a small message leaves in one stream write.
	writeBufSize = 16 << 10
	// readBufSize is the read buffer of a message head.
	readBufSize = 4 << 10
)

var (
	copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}
	writers  = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
	readers  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
)

func getWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writers.Put(bw)
}

func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

// writeStatusLine writes "HTTP/1.1 <code> <reason>". status is the
// "200 OK" form of http.Response.Status; its reason is kept.
func writeStatusLine(bw *bufio.Writer, code int, status string) {
	reason := http.StatusText(code)
	if _, text, ok := strings.Cut(status, " "); ok && text != "" && !strings.ContainsAny(text, "\r\n") {
		reason = text
	}
	bw.WriteString("HTTP/1.1 ")
	var num [3]byte
	bw.Write(strconv.AppendInt(num[:0], int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(reason)
	bw.WriteString("\r\n")
}

// writeFraming writes the headers that frame a body of cl bytes, or a
// chunked body (declaring trailers) when cl < 0, and ends the head. A
// response states even a length of 0, or its reader would wait for the
// end of the stream.
func writeFraming(bw *bufio.Writer, cl int64, trailer http.Header, response bool) {
	switch {
	case cl > 0 || (cl == 0 && response):
		bw.WriteString("Content-Length: ")
		var num [20]byte
		bw.Write(strconv.AppendInt(num[:0], cl, 10))
		bw.WriteString("\r\n")
	case cl < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if keys := trailerKeys(trailer); len(keys) > 0 {
			writeHeaderLine(bw, "Trailer", strings.Join(keys, ", "))
		}
	}
	bw.WriteString("\r\n")
}

// copyBody copies src to bw: exactly cl bytes when cl >= 0, else chunked
// (without the last chunk; see endChunked). It flushes after every read,
// so a body that trickles in goes out as it comes, and calls progress
// after every read that returned bytes. rerr is src's failure, werr bw's.
func copyBody(bw *bufio.Writer, src io.Reader, cl int64, progress func()) (n int64, rerr, werr error) {
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	for cl < 0 || n < cl {
		p := buf
		if cl >= 0 && int64(len(p)) > cl-n {
			p = p[:cl-n]
		}
		nr, er := src.Read(p)
		if nr > 0 {
			if progress != nil {
				progress()
			}
			if cl < 0 {
				var hdr [18]byte
				b := strconv.AppendInt(hdr[:0], int64(nr), 16)
				bw.Write(append(b, '\r', '\n'))
			}
			bw.Write(p[:nr])
			if cl < 0 {
				bw.WriteString("\r\n")
			}
			n += int64(nr)
			if werr = bw.Flush(); werr != nil {
				return n, nil, werr
			}
		}
		if er == io.EOF {
			break
		}
		if er != nil {
			return n, er, nil
		}
	}
	if cl >= 0 && n < cl {
		return n, fmt.Errorf("body ended after %d of %d bytes: %w", n, cl, io.ErrUnexpectedEOF), nil
	}
	return n, nil, nil
}

// endChunked writes the last chunk of a chunked body, with trailers.
func endChunked(bw *bufio.Writer, trailer http.Header) error {
	bw.WriteString("0\r\n")
	for _, k := range trailerKeys(trailer) {
		for _, v := range trailer[k] {
			writeHeaderLine(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// bodyAllowed reports whether a response to method with status carries a
// body.
func bodyAllowed(method string, status int) bool {
	if method == http.MethodHead {
		return false
	}
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// errorBody is the JSON body of an error the proxies produce.
func errorBody(code, msg string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)                                                 // "<service>" reads better than "\u003cservice\u003e"
	if err := enc.Encode(wire.Error{Code: code, Message: msg}); err != nil { // two strings always encode
		return []byte(`{"code":"internal","message":""}` + "\n")
	}
	return buf.Bytes()
}

// WriteError answers with status and the JSON body
// {"code": code, "message": msg}, as every error the proxies produce
// themselves: ErrorHeader is set to code so that clients can tell it from
// an answer of the service. msg is shown to the client; keep internal
// causes out of it.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	body := errorBody(code, msg)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set(ErrorHeader, code)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeErrorResponse writes a whole error response on a stream.
func writeErrorResponse(bw *bufio.Writer, status int, code, msg string) error {
	body := errorBody(code, msg)
	writeStatusLine(bw, status, "")
	bw.WriteString("Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n")
	writeHeaderLine(bw, ErrorHeader, code)
	writeFraming(bw, int64(len(body)), nil, true)
	bw.Write(body)
	return bw.Flush()
}

// streamConn is what the Server and the Transport need of a libp2p stream
// (network.Stream has it); the fuzz test feeds bytes through it.
type streamConn interface {
	io.ReadWriter
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	CloseWrite() error
	// Close ends both directions gracefully, Reset abortively.
	Close() error
	Reset() error
}

// Read modes of a streamIO.
const (
	readHead = iota // reading a message head: bounded, deadline set by the owner
	readBody        // reading a body: the deadline moves with every read
	readRaw         // a tunnel: no read deadline (an activity timer guards it)
)

// streamIO adapts a stream for bufio and net/http. While a message head is
// read it bounds the bytes read; afterwards it pushes the read deadline
// forward on every read, and the write deadline on every write, so that a
// peer that stalls for idle fails the copy instead of pinning a goroutine.
// Reads and writes may run concurrently with each other, but each side is
// used by one goroutine at a time.
type streamIO struct {
	c    streamConn
	idle time.Duration
	mode atomic.Int32

	// Read side.
	limit    int64 // bytes left for the head
	maxHead  int64 // the head's limit
	hitLimit bool
	rnext    time.Time // push the read deadline again after this

	// Write side.
	wnext time.Time
}

func newStreamIO(c streamConn, idle time.Duration, headLimit int) *streamIO {
	return &streamIO{c: c, idle: idle, limit: int64(headLimit), maxHead: int64(headLimit)}
}

func (s *streamIO) Read(p []byte) (int, error) {
	switch s.mode.Load() {
	case readHead:
		if s.limit <= 0 {
			s.hitLimit = true
			return 0, errHeadTooLarge
		}
		if int64(len(p)) > s.limit {
			p = p[:s.limit]
		}
		n, err := s.c.Read(p)
		s.limit -= int64(n)
		return n, err
	case readBody:
		// Pushing a deadline costs a timer; push it only once an eighth of
		// idle has passed, so the peer gets between 7/8 idle and idle.
		if now := time.Now(); now.After(s.rnext) {
			s.rnext = now.Add(s.idle / 8)
			_ = s.c.SetReadDeadline(now.Add(s.idle))
		}
	}
	return s.c.Read(p)
}

func (s *streamIO) Write(p []byte) (int, error) {
	if now := time.Now(); now.After(s.wnext) {
		s.wnext = now.Add(s.idle / 8)
		_ = s.c.SetWriteDeadline(now.Add(s.idle))
	}
	return s.c.Write(p)
}

// head switches to reading a message head of at most limit bytes.
func (s *streamIO) head(limit int) {
	s.limit, s.maxHead, s.hitLimit = int64(limit), int64(limit), false
	s.mode.Store(readHead)
}

// headRead returns how many bytes of the current head have been read.
func (s *streamIO) headRead() int64 { return s.maxHead - s.limit }

// reset readies the streamIO for the next exchange on its stream.
func (s *streamIO) reset(limit int) {
	s.head(limit)
	s.rnext, s.wnext = time.Time{}, time.Time{}
}

// body switches to reading a body.
func (s *streamIO) body() { s.mode.Store(readBody) }

// raw switches to tunnelling: no read deadline.
func (s *streamIO) raw() {
	s.mode.Store(readRaw)
	_ = s.c.SetReadDeadline(time.Time{})
}

// activity runs f once no progress has been reported for a while. Its
// methods are safe for concurrent use.
type activity struct {
	timer   *time.Timer
	d       atomic.Int64 // current period
	next    atomic.Int64 // unix nanos after which a kick resets the timer
	fired   atomic.Bool
	stopped atomic.Bool
}

func newActivity(d time.Duration, f func()) *activity {
	a := &activity{}
	a.d.Store(int64(d))
	a.timer = time.AfterFunc(d, func() {
		if !a.stopped.Load() {
			a.fired.Store(true)
			f()
		}
	})
	return a
}

// kick reports progress. Resetting a timer is cheap but not free, so it is
// done at most every eighth of the period.
func (a *activity) kick() {
	now := time.Now().UnixNano()
	if now < a.next.Load() || a.stopped.Load() {
		return
	}
	d := a.d.Load()
	a.next.Store(now + d/8)
	a.timer.Reset(time.Duration(d))
}

// set changes the period and restarts it.
func (a *activity) set(d time.Duration) {
	a.d.Store(int64(d))
	a.next.Store(time.Now().UnixNano() + int64(d)/8)
	a.timer.Reset(d)
}

func (a *activity) stop() {
	a.stopped.Store(true)
	a.timer.Stop()
}

// isTimeout reports whether err is a deadline or timeout expiring.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
