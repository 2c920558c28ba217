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

// InFlight is the requests in flight on instance id, as its last status
// poll said (0 for an instance not here).
func InFlight(a *Agent, id string) int {
	a.mu.Lock()
	in := a.instances[id]
	a.mu.Unlock()
	if in == nil {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.inFlight
}
