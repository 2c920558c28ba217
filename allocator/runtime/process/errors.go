package process

import "errors"

// ErrDirInUse means another runtime, in this process or another, holds the
// state directory: two runtimes supervising the same instances would
// restart them twice.
var ErrDirInUse = errors.New("state directory in use by another process runtime")
