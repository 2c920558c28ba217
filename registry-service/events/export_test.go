package events

// CutWatchesEvery makes every watch of s end after n responses of
// events, as a member losing its leader ends them.
func (s *Streamer) CutWatchesEvery(n int) { s.cut.Store(int64(n)) }
