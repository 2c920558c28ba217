package agent

import (
	"strconv"
	"sync"
	"time"

	"github.com/physarum-p2p/physarum/common/backoff"
	"github.com/physarum-p2p/physarum/common/wire"
)

// startFailures remembers, per version of a service, the last failure to
// start an instance on this node (a new version that crashes does not keep
// the old one from starting here during its revert). Requests keep coming for a service that cannot
// start here (its command is missing, its image absent, it crashes before
// it is healthy): each would create one more failed instance. Within a
// backoff after a failure, a deploy of that service is refused at once
// with the failure's reason, and the requester tries another node. The
// backoff doubles with each failure in a row, up to max, and a start that
// succeeds forgets it.
type startFailures struct {
	min, max time.Duration
	now      func() time.Time

	mu   sync.Mutex
	last map[startKey]startFailure
}

// startKey is a version of a service (0: unversioned).
type startKey struct {
	service string
	version int
}

func (k startKey) String() string {
	if k.version == 0 {
		return k.service
	}
	return k.service + " version " + strconv.Itoa(k.version)
}

type startFailure struct {
	at      time.Time
	wait    time.Duration // no start of the service before at+wait
	reason  string
	backoff *backoff.Backoff
}

func newStartFailures(lo, hi time.Duration) *startFailures {
	return &startFailures{min: lo, max: max(hi, lo), now: time.Now, last: map[startKey]startFailure{}}
}

// check refuses a start of service while its backoff runs.
func (f *startFailures) check(service startKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	last, ok := f.last[service]
	if !ok {
		return nil
	}
	now := f.now()
	left := last.at.Add(last.wait).Sub(now)
	if left <= 0 {
		return nil
	}
	return wire.Errorf(wire.CodeRuntimeError,
		"%s failed to start on this node %s ago (%s); not trying again here for %s",
		service, now.Sub(last.at).Round(time.Second), last.reason, left.Round(time.Second))
}

// failed records a failure to start service, and returns the backoff now
// in force.
func (f *startFailures) failed(service startKey, reason string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	last, ok := f.last[service]
	// One failure long after the last backoff ran out starts over.
	if !ok || now.Sub(last.at.Add(last.wait)) >= f.max {
		last.backoff = &backoff.Backoff{Min: f.min, Max: f.max}
	}
	wait := last.backoff.Next()
	f.last[service] = startFailure{at: now, wait: wait, reason: reason, backoff: last.backoff}
	return wait
}

// started forgets service's failures.
func (f *startFailures) started(service startKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.last, service)
}
