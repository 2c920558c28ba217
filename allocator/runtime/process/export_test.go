package process

import (
	"testing"
	"time"
)

// SetLogCheckInterval shortens how often running processes' logs are
// checked against LogMaxBytes. Call it before Start.
func SetLogCheckInterval(r *Runtime, d time.Duration) { r.logEvery = d }

// DisablePidfd makes runtimes watch processes by polling /proc, as on
// kernels without pidfds, until t ends.
func DisablePidfd(t testing.TB) {
	t.Helper()
	pidfdDisabled.Store(true)
	t.Cleanup(func() { pidfdDisabled.Store(false) })
}
