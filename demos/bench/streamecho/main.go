// Command streamecho is the second process of the bench suite's ceiling
// scenario (demos/bench/scen_ceiling.go). It starts a libp2p node exactly
// as the daemons do (the shared flags of common/nodeflags, then
// common/daemon.Start: TCP, the network's PSK, the same security transport
// and yamux), and serves two raw stream protocols on it:
//
//   - echo: every byte read is written back on the same stream, 64 KiB at
//     a time, until the caller closes its side;
//   - sink: every byte read is discarded; once the caller closes its side,
//     the number of bytes read is written back (8 bytes, big endian).
//
// It prints "streamecho ready" on stdout once both are served, and runs
// until SIGTERM or SIGINT. It is a benchmark helper, not part of a
// Physarum network.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	lpnet "github.com/libp2p/go-libp2p/core/network"

	"github.com/physarum-p2p/physarum/common/daemon"
	"github.com/physarum-p2p/physarum/common/nodeflags"
)

// The protocol IDs and the ready line; demos/bench/scen_ceiling.go holds
// the same values.
const (
	echoProtocol = "/physarum/bench/echo/1.0.0"
	sinkProtocol = "/physarum/bench/sink/1.0.0"
	readyLine    = "streamecho ready"
)

func main() {
	fs := flag.NewFlagSet("streamecho", flag.ContinueOnError)
	node := nodeflags.Register(fs, "streamecho", nodeflags.Defaults{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, LogLevel: "warn"})
	bufSize := fs.Int("buf", 64<<10, "bytes read (and echoed) at a time")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if err := node.Validate(os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "streamecho:", err)
		os.Exit(2)
	}
	if *bufSize < 1 {
		fmt.Fprintln(os.Stderr, "streamecho: -buf must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, node, *bufSize)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamecho:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, node *nodeflags.Flags, bufSize int) error {
	base, err := daemon.Start(node, os.Stdout, os.Stderr, nil)
	if err != nil {
		return err
	}
	defer base.Close()
	h := base.Node.Host()
	h.SetStreamHandler(echoProtocol, func(s lpnet.Stream) { echo(s, bufSize) })
	h.SetStreamHandler(sinkProtocol, func(s lpnet.Stream) { sink(s, bufSize) })
	fmt.Println(readyLine)
	<-ctx.Done()
	return nil
}

// echo writes back what it reads until the caller closes its side, then
// closes the stream.
func echo(s lpnet.Stream, bufSize int) {
	buf := make([]byte, bufSize)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				_ = s.Reset()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			_ = s.Close()
			return
		}
		if err != nil {
			_ = s.Reset()
			return
		}
	}
}

// sink reads until the caller closes its side, then answers the count.
func sink(s lpnet.Stream, bufSize int) {
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{s}, make([]byte, bufSize))
	if err != nil {
		_ = s.Reset()
		return
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	if _, err := s.Write(b[:]); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}
