// Package e2e holds end-to-end tests that drive the built binaries the way
// a user does: separate processes with real flags and environment, a
// registry, allocators, registry-cli and a client proxy, with each kind of
// process killed and restarted. It has no code of its own.
package e2e
