package cli

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/physarum-p2p/physarum/common/psk"
)

func idCommand() *command {
	return &command{
		name: "id", summary: "Print this CLI's peer ID (for a registry's -writers) and the network's PSK fingerprint",
		run: func(ctx context.Context, s *session, args []string) error {
			if err := wantArgs(args, 0, "no arguments"); err != nil {
				return err
			}
			cfg, _, err := s.node.Resolve(s.env.Getenv)
			if err != nil {
				return usageError{err.Error()}
			}
			id, err := peer.IDFromPrivateKey(cfg.Identity)
			if err != nil {
				return err
			}
			if s.json {
				return s.printJSON(map[string]string{"PeerID": id.String(), "Network": psk.Fingerprint(cfg.PSK)})
			}
			fmt.Fprintf(s.env.Stdout, "peer ID %s\nnetwork %s (PSK fingerprint)\n", id, psk.Fingerprint(cfg.PSK))
			return nil
		},
	}
}
