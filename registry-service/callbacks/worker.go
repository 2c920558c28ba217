// Package callbacks delivers callbacks (SPEC.md section 12, seed 003):
// every event a callback selects (registry.Callback.Selects) is POSTed
// to its URL as JSON, signed as Standard Webhooks says, at least once and
// in order, with retries that back off, and a cursor per callback kept in
// etcd so that another registry-service carries on where this one
// stopped.
//
// One Worker leads at a time: every registry-service voter runs one, and
// they elect the one that delivers, as the reconciler's leader is
// elected (etcd's concurrency.Election on its own key). While leading it
// reads the event stream once from the smallest cursor (the tail) and
// hands each event to the callbacks that select it; each callback
// delivers its events one at a time. A callback behind the tail (added
// while the tail was past its cursor, or one whose in-memory queue
// filled up while its receiver failed) reads its own stream from its
// cursor until it reaches the tail, then rejoins it.
//
//	w := callbacks.New(etcdClient, callbacks.Config{Name: peerID, Logger: log})
//	go w.Run(ctx) // until ctx ends
//
// The control package holds the definitions and the delivery state
// (control.CallbackRecord, control.CallbackState); this package only
// writes the state, and only while it leads (every write is guarded by
// its election key).
package callbacks

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/physarum-p2p/physarum/registry-service/election"
)

// ElectionKey is the delivery worker's election, beside the
// reconciler's.
const ElectionKey = "/physarum/election/callbacks"

// LeadsLine is what a Worker logs when it becomes the leader.
const LeadsLine = "callbacks: this registry-service leads the delivery worker"

// Defaults.
const (
	// DefaultTimeout bounds one delivery attempt.
	DefaultTimeout = 10 * time.Second
	// DefaultDisableAfter is how long a callback may fail before it is
	// disabled.
	DefaultDisableAfter = 24 * time.Hour
	// DefaultQueue is how many events a callback holds in memory; a
	// callback further behind reads its own stream as it delivers.
	DefaultQueue = 1000
	// DefaultCheckpoint is how often idle callbacks' cursors (and every
	// callback's pending count) are brought up to date in etcd.
	DefaultCheckpoint = 10 * time.Second
)

// DefaultSchedule is the wait before each retry of an event, after the
// first failure, the second, and so on; the last repeats until the
// callback is disabled. Each wait is jittered by up to ±20%.
var DefaultSchedule = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}

// Config configures a Worker. Zero values take defaults.
type Config struct {
	// Name identifies this registry-service in the election.
	Name string
	// ElectionTTL is the leader's lease in seconds: a dead leader is
	// replaced within about this long (default 3).
	ElectionTTL int
	// Schedule is the retry schedule (default DefaultSchedule).
	Schedule []time.Duration
	// DisableAfter is how long a callback fails before it is disabled
	// (default DefaultDisableAfter).
	DisableAfter time.Duration
	// Fast divides Schedule, DisableAfter and Checkpoint by 10, for tests
	// and demos (registry-service sets it under PHYSARUM_FAST_TIMING=1).
	Fast bool
	// Timeout bounds one attempt (default DefaultTimeout).
	Timeout time.Duration
	// Queue bounds the events held in memory per callback (default
	// DefaultQueue).
	Queue int
	// Checkpoint is the period of the idle cursors' writes (default
	// DefaultCheckpoint).
	Checkpoint time.Duration
	// Client sends the deliveries (default: one that follows no
	// redirect; a redirect is a failure).
	Client *http.Client
	Logger *slog.Logger
	// Registerer receives the worker's metrics (nil: none).
	Registerer prometheus.Registerer
	// Now is the clock of the deliveries' timestamps and the state's
	// times (default time.Now).
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.ElectionTTL <= 0 {
		c.ElectionTTL = 3
	}
	if len(c.Schedule) == 0 {
		c.Schedule = DefaultSchedule
	}
	if c.DisableAfter <= 0 {
		c.DisableAfter = DefaultDisableAfter
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Queue <= 0 {
		c.Queue = DefaultQueue
	}
	if c.Checkpoint <= 0 {
		c.Checkpoint = DefaultCheckpoint
	}
	if c.Fast {
		s := make([]time.Duration, len(c.Schedule))
		for i, d := range c.Schedule {
			s[i] = d / 10
		}
		c.Schedule, c.DisableAfter, c.Checkpoint = s, c.DisableAfter/10, c.Checkpoint/10
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Worker campaigns for the delivery of callbacks and delivers while it
// leads. Its methods are safe for concurrent use.
type Worker struct {
	cli     *clientv3.Client
	cfg     Config
	log     *slog.Logger
	metrics *metrics
}

// New returns a Worker over cli, a client to the cluster.
func New(cli *clientv3.Client, cfg Config) *Worker {
	cfg.defaults()
	log := cfg.Logger.With("component", "callbacks")
	return &Worker{cli: cli, cfg: cfg, log: log, metrics: newMetrics(cfg.Registerer)}
}

// Schedule is the retry schedule in effect (Config.Schedule, a tenth of
// it under Config.Fast).
func (w *Worker) Schedule() []time.Duration { return w.cfg.Schedule }

// Close removes the worker's metrics from their registry. Call it after
// Run has returned.
func (w *Worker) Close() { w.metrics.unregister() }

// Run campaigns for leadership among the registry-services that run a
// Worker and delivers while it leads, until ctx ends. Losing the lead (its
// session lapsed, a write refused because another leads) returns it to
// the campaign. It returns once every delivery it started has stopped.
func (w *Worker) Run(ctx context.Context) {
	election.Run(ctx, w.cli, election.Config{
		Key: ElectionKey, Name: w.cfg.Name, TTL: w.cfg.ElectionTTL, What: "callbacks",
		LeadsLine: LeadsLine, Logger: w.log,
	}, func(ctx context.Context, t election.Term) error {
		return newLeader(w, t.Key, t.Rev).run(ctx)
	}, w.metrics.leading)
}
