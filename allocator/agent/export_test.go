package agent

// SetPortPicker replaces where a's instance ports come from, so that a
// test can hand out a port that is already taken.
func SetPortPicker(a *Agent, pick func(host string, n int, skip func(int) bool) ([]int, error)) {
	a.ports.mu.Lock()
	defer a.ports.mu.Unlock()
	a.ports.pick = pick
}

// SetAdmitHook makes start call hook just before it admits an instance.
func SetAdmitHook(a *Agent, hook func()) { a.admitHook = hook }

// Closing reports whether Close has begun.
func Closing(a *Agent) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}
