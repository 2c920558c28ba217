package control

import "time"

// Settle waits for the starts and stops the reconciler launched.
func (r *Reconciler) Settle() { r.wg.Wait() }

// NextWake is nextWake, for tests.
func (r *Reconciler) NextWake(now time.Time) time.Duration { return r.nextWake(now) }
