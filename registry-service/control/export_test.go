package control

import (
	"context"
	"time"

	"github.com/physarum-p2p/physarum/registry-service/control/autoscale"
)

// Settle waits for the starts and stops the reconciler launched.
func (r *Reconciler) Settle() { r.wg.Wait() }

// NextWake is nextWake, for tests.
func (r *Reconciler) NextWake(now time.Time) time.Duration { return r.nextWake(now) }

// AutoscaleRound evaluates the autoscaling policies due at now (due keeps
// the next evaluation of each), with Prometheus at promURL.
func (r *Reconciler) AutoscaleRound(ctx context.Context, due map[string]time.Time, promURL string, now time.Time) {
	r.autoscaleRound(ctx, due, autoscale.PromQuerier{URL: promURL}, now)
}
