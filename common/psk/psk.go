// Package psk turns the network passphrase into the 32-byte pre-shared key
// that libp2p's private network (pnet) uses to encrypt every connection.
//
// Key derivation (a protocol contract: every node must derive the same key):
//
//	key = HKDF-SHA256(secret = passphrase, salt = "physarum/psk/v1", info = "libp2p-pnet", length = 32)
//
// HKDF is fast, so a passphrase is only as strong as its entropy: use a long
// random one (for example `head -c 32 /dev/urandom | base64`). A file in the
// libp2p swarm.key format (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits) is
// used as the key itself, without derivation.
package psk

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// EnvVar is the environment variable read when no flag gives the PSK.
const EnvVar = "P2P_PSK"

// Size is the length of a libp2p private-network key.
const Size = 32

const (
	kdfSalt = "physarum/psk/v1"
	kdfInfo = "libp2p-pnet"
)

// ErrMissing means no passphrase was given anywhere. Binaries stop on it:
// a network must never silently run with a random or empty key.
var ErrMissing = errors.New("no PSK: set -psk, -psk-file or the " + EnvVar + " environment variable to the network's passphrase")

// Derive returns the network key for passphrase.
func Derive(passphrase string) (pnet.PSK, error) {
	if strings.TrimSpace(passphrase) == "" {
		return nil, ErrMissing
	}
	key, err := hkdf.Key(sha256.New, []byte(passphrase), []byte(kdfSalt), kdfInfo, Size)
	if err != nil {
		return nil, fmt.Errorf("derive PSK: %w", err)
	}
	return pnet.PSK(key), nil
}

// Source says where the PSK comes from; the first non-empty one wins, in
// the order Flag, File, Env.
type Source struct {
	Flag string // value of -psk
	File string // path given to -psk-file
	Env  string // value of P2P_PSK
}

// Resolve loads the key from the first source that is set.
func Resolve(src Source) (pnet.PSK, error) {
	switch {
	case src.Flag != "":
		return Derive(src.Flag)
	case src.File != "":
		return LoadFile(src.File)
	case src.Env != "":
		// Allocators hand instances the key itself, in swarm.key format.
		return Parse([]byte(src.Env))
	}
	return nil, ErrMissing
}

// swarmKeyHeader starts a key file in libp2p's swarm.key format.
const swarmKeyHeader = "/key/swarm/psk/1.0.0/"

// LoadFile reads a PSK file: either libp2p's swarm.key format, used as is,
// or a passphrase (one line; surrounding white space is ignored).
func LoadFile(path string) (pnet.PSK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read PSK file: %w", err)
	}
	key, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("PSK file %s: %w", path, err)
	}
	return key, nil
}

// Parse reads the contents of a PSK file (see LoadFile).
func Parse(b []byte) (pnet.PSK, error) {
	if bytes.HasPrefix(b, []byte(swarmKeyHeader)) {
		key, err := pnet.DecodeV1PSK(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		if len(key) != Size {
			return nil, fmt.Errorf("swarm key is %d bytes, want %d", len(key), Size)
		}
		return key, nil
	}
	return Derive(strings.TrimSpace(string(b)))
}

// Fingerprint is a short, non-secret identifier of a key, for logs: two
// nodes with different fingerprints cannot talk to each other.
func Fingerprint(key pnet.PSK) string {
	sum := sha256.Sum256(append([]byte("physarum/psk-fingerprint/v1"), key...))
	return hex.EncodeToString(sum[:4])
}
