package agent

// SetPortPicker replaces where a's instance ports come from, so that a
// test can hand out a port that is already taken.
func SetPortPicker(a *Agent, pick func(host string, n int, skip func(int) bool) ([]int, error)) {
	a.ports.mu.Lock()
	defer a.ports.mu.Unlock()
	a.ports.pick = pick
}
