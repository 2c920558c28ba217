package forward

import (
	"errors"
	"io"
	"sync"
	"time"
)

// end is one side of a tunnel.
type end struct {
	io.Reader
	io.Writer
	// closeWrite tells the side no more bytes come; nil when it cannot.
	closeWrite func() error
	// close ends the side in both directions, abortively if need be.
	close func() error
}

// closeWriteOf returns rwc's CloseWrite, or nil when it has none.
func closeWriteOf(rwc io.ReadWriteCloser) func() error {
	if cw, ok := rwc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite
	}
	return nil
}

// pipe copies bytes between a and b both ways until both directions are
// done, or until idle passes without a byte either way, then closes both.
// A direction that ends cleanly is half-closed when its destination allows
// it; otherwise, and on any error, the whole tunnel ends (as
// net/http/httputil.ReverseProxy does).
func pipe(a, b end, idle time.Duration) {
	var once sync.Once
	shut := func() {
		once.Do(func() {
			_ = a.close()
			_ = b.close()
		})
	}
	act := newActivity(idle, shut)
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(b, a, act, shut)
	}()
	copyHalf(a, b, act, shut)
	<-done
	act.stop()
	shut()
}

// copyHalf copies src to dst until src ends.
func copyHalf(dst, src end, act *activity, shut func()) {
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			act.kick()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				shut()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			if dst.closeWrite == nil || dst.closeWrite() != nil {
				shut()
			}
			return
		}
		if err != nil {
			shut()
			return
		}
	}
}
