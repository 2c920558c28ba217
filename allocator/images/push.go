package images

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/wire"
)

// PushResult says what a push did.
type PushResult struct {
	// Had: the peer held the image already; nothing was sent.
	Had bool
	// Bytes is the size of the stream sent.
	Bytes int64
	// Took is how long the transfer took.
	Took time.Duration
}

// Push hands a held image to peer p, which loads and checks it before it
// answers. progress, if set, learns the bytes sent so far. The transfer
// fails if it stalls for idle (0: DefaultIdleTimeout) or ctx ends.
func Push(ctx context.Context, h host.Host, p peer.ID, store Store, id string, idle time.Duration, progress func(int64)) (PushResult, error) {
	if !ValidID(id) {
		return PushResult{}, fmt.Errorf("push %s: not an image ID (want sha256:<64 hex digits>)", id)
	}
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	st, err := h.NewStream(rctx, p, Protocol)
	cancel()
	if err != nil {
		return PushResult{}, fmt.Errorf("open image stream to %s: %w", p.ShortString(), err)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	_ = st.SetDeadline(time.Now().Add(requestTimeout))
	if err := wire.WriteJSON(st, Request{Op: OpPut, Image: id}, maxRequest); err != nil {
		_ = st.Reset()
		return PushResult{}, fmt.Errorf("send image request: %w", err)
	}
	var reply Reply
	if err := readReply(st, &reply); err != nil {
		_ = st.Reset()
		return PushResult{}, err
	}
	if reply.Have {
		_ = st.Close()
		return PushResult{Had: true}, nil
	}
	start := time.Now()
	n, err := send(ctx, st, store, id, idle, progress)
	if err != nil {
		_ = st.Reset()
		return PushResult{Bytes: n}, err
	}
	_ = st.CloseWrite()
	// The peer answers once the image is loaded and checked.
	_ = st.SetReadDeadline(time.Now().Add(idle + time.Minute))
	if err := readReply(st, &reply); err != nil {
		_ = st.Reset()
		return PushResult{Bytes: n}, err
	}
	_ = st.Close()
	if reply.Loaded != id {
		return PushResult{Bytes: n}, fmt.Errorf("push %s: the peer loaded %q", id, reply.Loaded)
	}
	return PushResult{Bytes: n, Took: time.Since(start)}, nil
}

// readReply reads one reply frame: a refusal comes back as *wire.Error.
func readReply(st interface{ Read([]byte) (int, error) }, reply *Reply) error {
	b, err := wire.ReadFrame(st, maxReply)
	if err != nil {
		return fmt.Errorf("read image reply: %w", err)
	}
	return wire.DecodeResponse(b, reply)
}

// Has asks peer p whether it holds image id.
func Has(ctx context.Context, h host.Host, p peer.ID, id string) (bool, error) {
	if !ValidID(id) {
		return false, fmt.Errorf("has %s: not an image ID (want sha256:<64 hex digits>)", id)
	}
	var reply Reply
	if err := wire.Call(ctx, h, p, Protocol, Request{Op: OpHas, Image: id}, &reply, wire.CallOptions{MaxResponse: maxReply, Timeout: requestTimeout}); err != nil {
		return false, err
	}
	return reply.Have, nil
}
