// Package keys creates, stores and loads node identities (libp2p private
// keys). Key files hold the protobuf encoding libp2p defines, are written
// atomically with mode 0600, and reload to the same peer ID.
package keys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Algorithms accepted by -algo, case-insensitive.
var Algorithms = []string{"Ed25519", "RSA", "Secp256k1", "ECDSA"}

// MinRSABits is the smallest RSA key accepted (libp2p refuses smaller ones).
const MinRSABits = 2048

// ErrCorrupt means a key file exists but does not hold a usable key.
var ErrCorrupt = errors.New("corrupt key file")

// ParseAlgo maps an -algo value to libp2p's key type.
func ParseAlgo(name string) (int, error) {
	switch strings.ToLower(name) {
	case "ed25519", "":
		return crypto.Ed25519, nil
	case "rsa":
		return crypto.RSA, nil
	case "secp256k1":
		return crypto.Secp256k1, nil
	case "ecdsa":
		return crypto.ECDSA, nil
	}
	return 0, fmt.Errorf("unknown key algorithm %q (want one of %s)", name, strings.Join(Algorithms, ", "))
}

// Generate makes a new key. bits is used for RSA only.
func Generate(algo string, bits int) (crypto.PrivKey, error) {
	typ, err := ParseAlgo(algo)
	if err != nil {
		return nil, err
	}
	if typ == crypto.RSA && bits < MinRSABits {
		return nil, fmt.Errorf("RSA key of %d bits is too small (minimum %d)", bits, MinRSABits)
	}
	priv, _, err := crypto.GenerateKeyPairWithReader(typ, bits, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", algo, err)
	}
	return priv, nil
}

// Load reads the key in path.
func Load(path string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	priv, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w (move it away to create a new identity, or restore it from a backup)", ErrCorrupt, path, err)
	}
	return priv, nil
}

// Save writes priv to path with mode 0600, creating its directory (0700)
// when missing. The write is atomic: a crash leaves the old file or the new
// one, never half of one.
func Save(path string, priv crypto.PrivKey) error {
	b, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("set key file mode: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install key file: %w", err)
	}
	return nil
}

// LoadOrCreate loads the key in path, or generates one with algo and bits
// and saves it there when the file does not exist. created reports which.
func LoadOrCreate(path, algo string, bits int) (priv crypto.PrivKey, created bool, err error) {
	priv, err = Load(path)
	if err == nil {
		return priv, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	priv, err = Generate(algo, bits)
	if err != nil {
		return nil, false, err
	}
	if err := Save(path, priv); err != nil {
		return nil, false, err
	}
	return priv, true, nil
}

// DefaultPath is where binary keeps its key when -keyfile is not given:
// <user config dir>/physarum/<binary>.key. It returns "" when the user has
// no config directory (e.g. no HOME in a container); callers then need
// -keyfile or -ephemeral.
func DefaultPath(binary string) string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "physarum", binary+".key")
}
