package control

// Settle waits for the starts and stops the reconciler launched.
func (r *Reconciler) Settle() { r.wg.Wait() }
