package wire

import (
	"errors"
	"fmt"
)

// Error codes carried in Error.Code. They are part of the protocol: add new
// ones, never change the meaning of an existing one.
const (
	CodeBadRequest   = "bad_request"   // the request is malformed or invalid
	CodeNotFound     = "not_found"     // the named thing does not exist
	CodeForbidden    = "forbidden"     // the caller may not do this
	CodeConflict     = "conflict"      // the request conflicts with current state
	CodeNoCapacity   = "no_capacity"   // not enough CPU or memory
	CodeUnavailable  = "unavailable"   // a dependency is down; retry elsewhere
	CodeTimeout      = "timeout"       // the request ran past its deadline
	CodeTooLarge     = "too_large"     // a frame or field exceeded its limit
	CodeInternal     = "internal"      // a bug or unexpected failure on the server
	CodeUnsupported  = "unsupported"   // the server cannot do this (e.g. no Docker)
	CodeRuntimeError = "runtime_error" // starting or running an instance failed
	CodeGone         = "gone"          // what was asked for is no longer kept (a compacted event index)
	CodeBusy         = "busy"          // the server is at its limit of such requests; try another or later
)

// Error is a structured error that crosses the wire as
// {"code": "...", "message": "..."}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Is makes errors.Is(err, &Error{Code: c}) match any Error with code c.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Message == "" && t.Code == e.Code
}

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the *Error in err's chain, or "" when there is
// none.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// MessageOf returns the message of the *Error in err's chain, or err's
// text when there is none: what to show a user of a refusal.
func MessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}
