package forward

import (
	"errors"

	"github.com/physarum-p2p/physarum/common/wire"
)

// Sentinel errors of the package; check them with errors.Is.
var (
	// ErrNotSent is in the chain of every error after which the service
	// cannot have received the request: the stream could not be opened,
	// the instance does not serve Protocol, its Server answered that the
	// service was unreachable, or it had closed the kept stream the request
	// went out on. Use IsNotSent.
	ErrNotSent = errors.New("request not sent")
	// ErrNoResponse means the instance failed after getting an idempotent
	// request without a body, before answering: Forward wrote nothing,
	// and the request may be sent to another instance. See Retryable.
	ErrNoResponse = errors.New("instance failed before answering")
	// ErrNoService means a client proxy's request path does not start with
	// a service name (see SplitPath).
	ErrNoService = errors.New("request path names no service")
	// ErrBadUpgrade means an instance switched to a protocol the client did
	// not ask for, or answered 101 to a request that was not an upgrade.
	ErrBadUpgrade = errors.New("instance switched protocols unasked")
	// ErrNoPeer means a request to RoundTripper names no peer: its context
	// has none (see WithPeer) and its URL is not libp2p://<peer-id>/...
	ErrNoPeer = errors.New("request names no peer (forward.WithPeer or a libp2p://<peer-id>/ URL)")
	// ErrBadTarget means a Server's service address is not host:port.
	ErrBadTarget = errors.New("service address is not host:port")
)

// Internal sentinel errors.
var (
	// errStale means a kept stream had been closed by the Server before
	// the request reached it.
	errStale = errors.New("kept stream closed by the instance")
	// errDetached ends a request body taken back from its reader.
	errDetached = errors.New("request body is no longer available")
	// errHeadTooLarge ends the read of a head longer than its limit.
	errHeadTooLarge = errors.New("message head too large")
)

// Error codes of the JSON errors the proxies produce, beside the codes of
// common/wire they reuse (wire.CodeUnavailable for an instance or service
// that could not be reached, wire.CodeTimeout, wire.CodeBadRequest,
// wire.CodeTooLarge, wire.CodeUnsupported).
const (
	// CodeBadGateway means the instance or its service failed after the
	// request had reached it.
	CodeBadGateway = "bad_gateway"
)

// IsNotSent reports whether err means the service never received the
// request, so that it may be sent to another instance. Whether it can be
// sent again also depends on its body: a body that was partly read is gone
// unless the caller can make a new one.
func IsNotSent(err error) bool { return errors.Is(err, ErrNotSent) }

// Retryable reports whether Forward wrote nothing and the request may go
// to another instance: it was not sent, or it is idempotent, bodiless, and
// its instance failed before answering.
func Retryable(err error) bool { return IsNotSent(err) || errors.Is(err, ErrNoResponse) }

// notSentError marks an error as ErrNotSent while keeping its own message
// and chain.
type notSentError struct{ err error }

func notSent(err error) error { return &notSentError{err: err} }

func (e *notSentError) Error() string        { return e.err.Error() }
func (e *notSentError) Unwrap() error        { return e.err }
func (e *notSentError) Is(target error) bool { return target == ErrNotSent }

// codeUnavailable is the code a Server answers with when it did not forward
// the request, and the one Transport turns into an ErrNotSent error.
const codeUnavailable = wire.CodeUnavailable
