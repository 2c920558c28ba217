package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// ErrMismatch: what a peer sent loaded as another image than the one
// asked for.
var ErrMismatch = errors.New("image ID mismatch")

// loadChecked loads a `docker save` stream that must hold image want, and
// leaves the store as it found it but for want: an image the stream held
// that was not here before and is not want is removed, and so is
// everything it loaded when it fails.
func loadChecked(ctx context.Context, store Store, r io.Reader, want string) error {
	before, err := store.List(ctx)
	if err != nil {
		return err
	}
	ids, err := store.Load(ctx, r)
	keep := err == nil && slices.Contains(ids, want)
	for _, id := range ids {
		if (id == want && keep) || slices.Contains(before, id) {
			continue
		}
		// Without ctx: what was loaded must go even when the caller gave up.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		_ = store.Remove(rmCtx, id)
		cancel()
	}
	switch {
	case err != nil:
		return err
	case !keep:
		return fmt.Errorf("the stream held %v, not %s: %w", ids, want, ErrMismatch)
	}
	// The daemon said so; check that it holds it under that ID.
	if _, err := store.Size(ctx, want); err != nil {
		return fmt.Errorf("after loading: %w", err)
	}
	return nil
}

// receive reads an image's chunks from st into the store and checks them.
// A stream that stalls for idle, ends early or passes max fails, and
// whatever it loaded is removed.
func receive(ctx context.Context, st network.Stream, store Store, want string, max int64, idle time.Duration, progress func(int64)) (int64, error) {
	cr := newChunkReader(st, max, func() { _ = st.SetReadDeadline(time.Now().Add(idle)) })
	pr, pw := io.Pipe()
	copied := make(chan error, 1)
	var n int64
	var loaded atomic.Bool
	go func() {
		var err error
		n, err = copyCounting(pw, cr, progress)
		pw.CloseWithError(err) // nil: EOF for the loader
		if errors.Is(err, io.ErrClosedPipe) && loaded.Load() {
			// The loader has all it needs (a tar ends before the
			// stream does): read the rest, so the sender sees it all
			// taken.
			var m int64
			m, err = copyCounting(io.Discard, cr, nil)
			n += m
		}
		copied <- err
	}()
	loadErr := loadChecked(ctx, store, pr, want)
	loaded.Store(loadErr == nil)
	// The loader may stop reading before the trailer, or fail: unblock
	// the copy either way.
	pr.CloseWithError(io.ErrClosedPipe)
	if loadErr != nil {
		// Stop taking what the sender still sends: the copy ends.
		_ = st.CloseRead()
	}
	copyErr := <-copied
	switch {
	case loadErr != nil && copyErr != nil && !errors.Is(copyErr, io.ErrClosedPipe):
		// The stream's failure is why the load failed.
		return n, copyErr
	case loadErr != nil:
		return n, loadErr
	}
	// A stream whose end went wrong after the image loaded and checked out
	// does not matter: the image is good.
	return n, nil
}

// copyCounting copies like io.Copy, reporting the running total.
func copyCounting(w io.Writer, r io.Reader, progress func(int64)) (int64, error) {
	buf := make([]byte, chunkSize)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
			if progress != nil {
				progress(total)
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// send streams a held image to st as chunks and a trailer.
func send(ctx context.Context, st network.Stream, store Store, id string, idle time.Duration, progress func(int64)) (int64, error) {
	rc, err := store.Save(ctx, id)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	cw := newChunkWriter(st, func() { _ = st.SetWriteDeadline(time.Now().Add(idle)) })
	n, err := copyCounting(cw, rc, progress)
	if err != nil {
		return n, fmt.Errorf("send %s: %w", id, err)
	}
	if err := cw.Close(); err != nil {
		return n, fmt.Errorf("send %s: %w", id, err)
	}
	return n, nil
}
