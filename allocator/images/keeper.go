package images

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// DefaultGrace is how long an image no service uses stays on a node.
const DefaultGrace = time.Hour

// DefaultKeepEvery is the period of the keeper's passes.
const DefaultKeepEvery = 15 * time.Second

// ServiceImages returns the image IDs that registered services use.
type ServiceImages func(ctx context.Context) (map[string]bool, error)

// Announcer announces this node under DHT namespaces (a *p2p.Node).
type Announcer interface {
	AdvertiseNow(ns string)
	StopAdvertising(ns string)
}

// KeeperOptions configure a Keeper.
type KeeperOptions struct {
	// Every is the period of passes (default DefaultKeepEvery).
	Every time.Duration
	// Grace is how long an unused image stays (default DefaultGrace).
	Grace time.Duration
	// StateFile keeps, across restarts, which images the keeper looks
	// after and since when each is unused ("": in memory only).
	StateFile string
	// Changed learns that Held changed (to republish the node record).
	Changed func()
	Logger  *slog.Logger
	Metrics *Metrics
}

// Keeper looks after the images of one node: it announces those a
// registered service uses (and those just handed over or fetched), knows
// which it holds for the node record, and removes, after a grace period,
// the images it looks after that no service uses and no container runs.
// It never removes an image it was never told about: other images on the
// daemon are the operator's.
type Keeper struct {
	store    Store
	services ServiceImages
	ann      Announcer
	opts     KeeperOptions
	log      *slog.Logger
	kick     chan struct{}

	mu        sync.Mutex
	held      []string             // service images held, sorted
	announced map[string]bool      // namespaces' image IDs advertised
	managed   map[string]time.Time // looked after; unused since (zero: in use)
}

// NewKeeper returns a Keeper; Run drives it.
func NewKeeper(store Store, services ServiceImages, ann Announcer, opts KeeperOptions) *Keeper {
	if opts.Every <= 0 {
		opts.Every = DefaultKeepEvery
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	k := &Keeper{
		store: store, services: services, ann: ann, opts: opts,
		log: opts.Logger.With("component", "images"), kick: make(chan struct{}, 1),
		announced: map[string]bool{}, managed: map[string]time.Time{},
	}
	k.loadState()
	return k
}

// Held returns the IDs of the registered services' images the node holds.
func (k *Keeper) Held() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.held)
}

// Add takes an image that was just fetched or handed over into the
// keeper's care and announces it at once.
func (k *Keeper) Add(id string) {
	k.mu.Lock()
	if _, ok := k.managed[id]; !ok {
		k.managed[id] = time.Time{}
	}
	fresh := !k.announced[id]
	k.announced[id] = true
	k.mu.Unlock()
	if fresh {
		k.ann.AdvertiseNow(Namespace(id))
	}
	k.Kick()
}

// Kick asks for a pass now.
func (k *Keeper) Kick() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// Run makes a pass every period, and when kicked, until ctx ends; then it
// stops the announcements.
func (k *Keeper) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			k.mu.Lock()
			for id := range k.announced {
				k.ann.StopAdvertising(Namespace(id))
			}
			k.mu.Unlock()
			return
		case <-t.C:
		case <-k.kick:
		}
		k.pass(ctx, time.Now())
		t.Reset(k.opts.Every)
	}
}

// pass brings announcements, the held set and the images' clocks up to
// date, and removes what has been unused for the grace period. Without an
// answer from the registry it changes nothing: a registry that cannot be
// reached is no sign that services are gone.
func (k *Keeper) pass(ctx context.Context, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, k.opts.Every)
	defer cancel()
	services, err := k.services(ctx)
	if err != nil {
		k.log.Debug("images: cannot list services; keeping things as they are", "err", err)
		return
	}
	present, err := k.store.List(ctx)
	if err != nil {
		k.log.Debug("images: cannot list the daemon's images", "err", err)
		return
	}
	inUse, err := k.store.InUse(ctx)
	if err != nil {
		k.log.Debug("images: cannot list the daemon's containers", "err", err)
		return
	}
	var held []string
	for _, id := range present {
		if services[id] {
			held = append(held, id)
		}
	}
	slices.Sort(held)
	held = slices.Compact(held)

	k.mu.Lock()
	for _, id := range held {
		if _, ok := k.managed[id]; !ok {
			k.managed[id] = time.Time{}
		}
	}
	var remove []string
	for id, since := range k.managed {
		switch {
		case !slices.Contains(present, id):
			delete(k.managed, id) // gone: removed by someone else
		case services[id] || inUse[id]:
			k.managed[id] = time.Time{}
		case since.IsZero():
			k.managed[id] = now
		case now.Sub(since) >= k.opts.Grace:
			remove = append(remove, id)
		}
	}
	changed := !slices.Equal(held, k.held)
	k.held = held
	k.mu.Unlock()

	for _, id := range remove {
		// Withdrawn first: no peer is sent here for an image on its way
		// out. A removal that fails announces it again (the next pass).
		k.mu.Lock()
		since := k.managed[id]
		delete(k.managed, id)
		k.mu.Unlock()
		k.announce()
		if err := k.store.Remove(ctx, id); err != nil {
			k.log.Warn("could not remove an unused image", "image", id, "err", err)
			k.mu.Lock()
			k.managed[id] = since
			k.mu.Unlock()
			continue
		}
		k.opts.Metrics.removedOne()
		k.log.Info("removed an image no service has used for the grace period", "image", id, "grace", k.opts.Grace)
	}
	k.announce()
	k.saveState()
	k.opts.Metrics.setHeld(len(held))
	if changed && k.opts.Changed != nil {
		k.opts.Changed()
	}
}

// announce advertises every image looked after, and stops advertising the
// rest.
func (k *Keeper) announce() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id := range k.managed {
		if !k.announced[id] {
			k.announced[id] = true
			k.ann.AdvertiseNow(Namespace(id))
		}
	}
	for id := range k.announced {
		if _, ok := k.managed[id]; !ok {
			delete(k.announced, id)
			k.ann.StopAdvertising(Namespace(id))
		}
	}
}

// state is the StateFile's content.
type state struct {
	// Images maps each image looked after to when it became unused
	// (absent or zero: in use).
	Images map[string]time.Time `json:"images"`
}

// loadState reads the StateFile; a missing or unreadable one starts empty
// (the images it named are then the operator's, never removed).
func (k *Keeper) loadState() {
	if k.opts.StateFile == "" {
		return
	}
	b, err := os.ReadFile(k.opts.StateFile)
	if os.IsNotExist(err) {
		return
	}
	if err == nil {
		var st state
		st, err = decodeState(b)
		if err == nil {
			k.managed = st.Images
			return
		}
	}
	k.log.Warn("images: ignoring the keeper's state file", "file", k.opts.StateFile, "err", err)
}

// decodeState parses a state file.
func decodeState(b []byte) (state, error) {
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, fmt.Errorf("parse: %w", err)
	}
	out := state{Images: make(map[string]time.Time, len(st.Images))}
	for id, since := range st.Images {
		if !ValidID(id) {
			return state{}, fmt.Errorf("%.80q is not an image ID", id)
		}
		out.Images[id] = since
	}
	return out, nil
}

// saveState writes the StateFile whole (a temporary file renamed over it).
func (k *Keeper) saveState() {
	if k.opts.StateFile == "" {
		return
	}
	k.mu.Lock()
	b, err := json.MarshalIndent(state{Images: maps.Clone(k.managed)}, "", "  ")
	k.mu.Unlock()
	if err == nil {
		tmp := k.opts.StateFile + ".tmp"
		if err = os.MkdirAll(filepath.Dir(tmp), 0o755); err == nil {
			if err = os.WriteFile(tmp, b, 0o644); err == nil {
				err = os.Rename(tmp, k.opts.StateFile)
			}
		}
	}
	if err != nil {
		k.log.Warn("images: could not save the keeper's state", "file", k.opts.StateFile, "err", err)
	}
}
