package placement

import "errors"

// ErrNoCandidate means no node passed the filters. Rank returns it wrapped
// in a *Rejections that says, per filter, how many nodes failed and why.
var ErrNoCandidate = errors.New("no candidate node")
