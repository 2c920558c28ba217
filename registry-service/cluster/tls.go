package cluster

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/pnet"
	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// etcd's peer and client ports speak TLS with client certificates, under a
// certificate authority derived from the network's PSK: every node that
// knows the PSK can derive the same CA and issue itself a certificate, and
// nothing else can talk to etcd. That keeps the registry inside the private
// network even though etcd's own traffic does not go over libp2p.
//
// The CA's key is Ed25519 from a seed, HKDF-SHA256(psk, salt
// "physarum/etcd-ca/v1"); with a fixed template and Ed25519's deterministic
// signatures, every node derives the same CA certificate byte for byte.

var caEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// deriveCA returns the network's CA certificate and key.
func deriveCA(key pnet.PSK) (*x509.Certificate, ed25519.PrivateKey, []byte, error) {
	seed, err := hkdf.Key(sha256.New, key, []byte("physarum/etcd-ca/v1"), "ed25519 seed", ed25519.SeedSize)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("derive CA key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "physarum registry CA"},
		NotBefore:             caEpoch,
		NotAfter:              caEpoch.AddDate(100, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return cert, priv, der, nil
}

// writeTLS issues this member a certificate for ips under the PSK's CA and
// writes CA, certificate and key into dir. The key file is 0600.
func writeTLS(dir string, key pnet.PSK, name string, ips []net.IP) (transport.TLSInfo, error) {
	ca, caKey, caDER, err := deriveCA(key)
	if err != nil {
		return transport.TLSInfo{}, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return transport.TLSInfo{}, fmt.Errorf("generate member key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return transport.TLSInfo{}, fmt.Errorf("certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, ips...),
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return transport.TLSInfo{}, fmt.Errorf("issue member certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		return transport.TLSInfo{}, fmt.Errorf("encode member key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return transport.TLSInfo{}, fmt.Errorf("create TLS directory: %w", err)
	}
	info := transport.TLSInfo{
		CertFile:       filepath.Join(dir, "member.crt"),
		KeyFile:        filepath.Join(dir, "member.key"),
		TrustedCAFile:  filepath.Join(dir, "ca.crt"),
		ClientCertAuth: true,
	}
	files := []struct {
		path  string
		block *pem.Block
		mode  os.FileMode
	}{
		{info.TrustedCAFile, &pem.Block{Type: "CERTIFICATE", Bytes: caDER}, 0o644},
		{info.CertFile, &pem.Block{Type: "CERTIFICATE", Bytes: der}, 0o644},
		{info.KeyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}, 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(f.block), f.mode); err != nil {
			return transport.TLSInfo{}, fmt.Errorf("write %s: %w", filepath.Base(f.path), err)
		}
	}
	return info, nil
}
