package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/wire"
)

// Holders finds the peers that announce an image, nearest first.
type Holders interface {
	Holders(ctx context.Context, id string) ([]peer.ID, error)
}

// ErrNoHolder: no peer of the network could send the image.
var ErrNoHolder = errors.New("no holder")

// Pull policies: whether an image reference that names a registry outside
// the network may be pulled from it.
const (
	PullNever   = "never"
	PullMissing = "missing"
)

// Puller is a Store that can pull from an outside registry.
type Puller interface {
	Pull(ctx context.Context, ref string) error
}

// FetcherOptions configure a Fetcher.
type FetcherOptions struct {
	// MaxSize bounds an image stream (default DefaultMaxSize).
	MaxSize int64
	// IdleTimeout is how long a transfer may stall (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Timeout bounds one fetch, all holders tried (default 10 minutes).
	// Callers wait at most their own context.
	Timeout time.Duration
	// Pull is PullNever (default) or PullMissing.
	Pull string
	// Fetched learns of each image a fetch brought (to announce it).
	Fetched func(id string)
	Logger  *slog.Logger
	Metrics *Metrics
}

// Fetcher brings images this node lacks from peers that hold them.
type Fetcher struct {
	h       host.Host
	holders Holders
	store   Store
	opts    FetcherOptions
	log     *slog.Logger

	// life ends at Close, and with it the fetches under way.
	life    context.Context
	endLife context.CancelFunc
	runs    sync.WaitGroup

	mu     sync.Mutex
	calls  map[string]*fetchCall
	closed bool
}

// fetchCall is one fetch under way, shared by every need of its image.
type fetchCall struct {
	done chan struct{}
	err  error
}

// NewFetcher returns a Fetcher that loads into store what holders have.
func NewFetcher(h host.Host, holders Holders, store Store, opts FetcherOptions) *Fetcher {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Pull == "" {
		opts.Pull = PullNever
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fetcher{
		h: h, holders: holders, store: store, opts: opts,
		log: opts.Logger.With("component", "images"), calls: make(map[string]*fetchCall),
	}
	f.life, f.endLife = context.WithCancel(context.Background())
	return f
}

// Close ends the fetches under way (their callers get an error) and waits
// for them.
func (f *Fetcher) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.endLife()
	f.runs.Wait()
}

// Fetch makes the image ref present in the store, if it is not: from the
// nearest peer that holds it, or, for a reference that names an outside
// registry under PullMissing, from that registry. Concurrent calls for one
// image share one transfer, which goes on if a caller gives up.
func (f *Fetcher) Fetch(ctx context.Context, ref string) error {
	if _, err := f.store.Size(ctx, ref); err == nil {
		return nil
	}
	switch Decide(ref, f.opts.Pull) {
	case ActionPull:
		return f.pull(ctx, ref)
	case ActionRefuse:
		return refusal(ref, f.opts.Pull)
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return fmt.Errorf("fetch image %s: the fetcher is closed", ref)
	}
	c, joined := f.calls[ref]
	if !joined {
		c = &fetchCall{done: make(chan struct{})}
		f.calls[ref] = c
		f.runs.Add(1)
		go f.run(ref, c)
	}
	f.mu.Unlock()
	if joined {
		f.opts.Metrics.joined()
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("fetch image %s: %w", ref, context.Cause(ctx))
	}
}

// run is one shared fetch, under its own deadline.
func (f *Fetcher) run(id string, c *fetchCall) {
	defer f.runs.Done()
	ctx, cancel := context.WithTimeout(f.life, f.opts.Timeout)
	defer cancel()
	c.err = f.fetch(ctx, id)
	f.mu.Lock()
	delete(f.calls, id)
	f.mu.Unlock()
	close(c.done)
	if c.err == nil && f.opts.Fetched != nil {
		f.opts.Fetched(id)
	}
}

// fetch tries the holders, nearest first; when every one was busy, it
// tries them again after a pause, until its deadline.
func (f *Fetcher) fetch(ctx context.Context, id string) error {
	pause := 250 * time.Millisecond
	for {
		holders, err := f.holders.Holders(ctx, id)
		if err != nil {
			return fmt.Errorf("fetch image %s: find holders: %w", id, err)
		}
		if len(holders) == 0 {
			return fmt.Errorf("no node of the network holds image %s: %w", id, ErrNoHolder)
		}
		var why []string
		busy := 0
		for _, p := range holders {
			err := f.get(ctx, p, id)
			if err == nil {
				return nil
			}
			if wire.CodeOf(err) == wire.CodeBusy {
				busy++
			}
			why = append(why, p.ShortString()+": "+wire.MessageOf(err))
			f.log.Warn("image fetch from a holder failed; trying the next", "image", id, "peer", p, "err", err)
			if ctx.Err() != nil {
				break
			}
		}
		if busy < len(holders) || ctx.Err() != nil {
			return fmt.Errorf("fetch image %s: no holder could send it (%s): %w", id, strings.Join(why, "; "), ErrNoHolder)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return fmt.Errorf("fetch image %s: every holder busy until the deadline: %w", id, ErrNoHolder)
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// get fetches the image from one holder.
func (f *Fetcher) get(ctx context.Context, p peer.ID, id string) error {
	start := time.Now()
	n, err := f.getFrom(ctx, p, id)
	took := time.Since(start)
	f.opts.Metrics.transfer("in", reasonOf(err), n, took)
	if err == nil {
		f.log.Info("fetched image", "image", id, "peer", p, "bytes", n, "seconds", took.Seconds(), "mib_per_s", rate(n, took))
	}
	return err
}

func (f *Fetcher) getFrom(ctx context.Context, p peer.ID, id string) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	st, err := f.h.NewStream(rctx, p, Protocol)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("open image stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	_ = st.SetDeadline(time.Now().Add(requestTimeout))
	if err := wire.WriteJSON(st, Request{Op: OpGet, Image: id}, maxRequest); err != nil {
		_ = st.Reset()
		return 0, fmt.Errorf("send image request: %w", err)
	}
	_ = st.CloseWrite()
	b, err := wire.ReadFrame(st, maxReply)
	if err != nil {
		_ = st.Reset()
		return 0, fmt.Errorf("read image reply: %w", err)
	}
	var reply Reply
	if err := wire.DecodeResponse(b, &reply); err != nil {
		_ = st.Reset()
		return 0, err
	}
	n, err := receive(ctx, st, f.store, id, f.opts.MaxSize, f.opts.IdleTimeout, nil)
	if err != nil {
		_ = st.Reset()
		return n, err
	}
	_ = st.Close()
	return n, nil
}

func (f *Fetcher) pull(ctx context.Context, ref string) error {
	p, ok := f.store.(Puller)
	if !ok {
		return fmt.Errorf("image %s: this store cannot pull", ref)
	}
	f.log.Info("pulling image from its registry (-pull missing)", "image", ref)
	if err := p.Pull(ctx, ref); err != nil {
		return fmt.Errorf("pull image %s: %w", ref, err)
	}
	return nil
}

// Actions Decide chooses between.
const (
	ActionFetch  = "fetch"  // ask the network's holders
	ActionPull   = "pull"   // pull from the registry the reference names
	ActionRefuse = "refuse" // neither can bring it
)

// Decide says how a missing image is brought: an image ID from the
// network's holders; a reference that names a registry (its first path
// element has a dot or a port, or is localhost) from that registry, if the
// policy is PullMissing; anything else cannot be brought.
func Decide(ref, policy string) string {
	switch {
	case ValidID(ref):
		return ActionFetch
	case policy == PullMissing && namesRegistry(ref):
		return ActionPull
	}
	return ActionRefuse
}

func namesRegistry(ref string) bool {
	first, rest, ok := strings.Cut(ref, "/")
	if !ok || rest == "" {
		return false
	}
	return strings.ContainsAny(first, ".:") || first == "localhost"
}

func refusal(ref, policy string) error {
	switch {
	case namesRegistry(ref) && policy != PullMissing:
		return fmt.Errorf("image %s is not on this node, and pulling from outside the network is off (start the allocator with -pull missing to allow it): %w", ref, ErrNoHolder)
	default:
		return fmt.Errorf("image %s is not on this node and cannot travel: only images registered by ID (sha256:…) move between nodes: %w", ref, ErrNoHolder)
	}
}
