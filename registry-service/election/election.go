// Package election runs a part of registry-service on one member of the
// cluster at a time: every member that runs it campaigns in an etcd
// election, and the elected one runs it until its session lapses (etcd
// unreachable, a long pause), it fails, or the member stops. A new leader
// takes over within about the session's TTL of the old one dying.
package election

import (
	"context"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/physarum-p2p/physarum/common/backoff"
)

// Config says what is elected, and how.
type Config struct {
	// Key is the election's etcd prefix.
	Key string
	// Name is this member's value in the election (its peer ID).
	Name string
	// TTL is the session's lease in seconds.
	TTL int
	// What names the part in log lines ("reconciler").
	What string
	// LeadsLine is logged on becoming the leader.
	LeadsLine string
	Logger    *slog.Logger
}

// Term is one leadership: the leader's key in the election and its
// creation revision, for writes guarded on still leading.
type Term struct {
	Key string
	Rev int64
}

// Run campaigns and runs lead while elected, again after each term, until
// ctx ends. leading (may be nil) hears each change of leadership. lead
// must return soon after its ctx ends.
func Run(ctx context.Context, cli *clientv3.Client, c Config, lead func(ctx context.Context, t Term) error, leading func(bool)) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if leading == nil {
		leading = func(bool) {}
	}
	retry := backoff.Backoff{Min: 500 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		err := campaign(ctx, cli, c, lead, leading)
		if ctx.Err() != nil {
			return
		}
		c.Logger.Warn(c.What+" election interrupted; campaigning again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(retry.Next()):
		}
	}
}

// campaign waits to be elected, leads until the session ends, ctx does or
// lead fails, and resigns.
func campaign(ctx context.Context, cli *clientv3.Client, c Config, lead func(context.Context, Term) error, leading func(bool)) error {
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(c.TTL), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer func() { _ = sess.Close() }()
	e := concurrency.NewElection(sess, c.Key)
	if err := e.Campaign(ctx, c.Name); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-lctx.Done():
		}
	}()
	leading(true)
	c.Logger.Info(c.LeadsLine)
	err = lead(lctx, Term{Key: e.Key(), Rev: e.Rev()})
	leading(false)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer rcancel()
	_ = e.Resign(rctx)
	if ctx.Err() == nil {
		c.Logger.Warn(c.What+": lost the lead", "err", err)
	}
	return err
}
