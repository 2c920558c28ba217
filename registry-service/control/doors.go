package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/physarum-p2p/physarum/allocator/deploy"
	"github.com/physarum-p2p/physarum/registry"
)

// hostDeployer asks allocators over libp2p, learning their addresses from
// their node records.
type hostDeployer struct{ h host.Host }

// NewHostDeployer returns the Deployer that asks allocators from h.
func NewHostDeployer(h host.Host) Deployer { return hostDeployer{h} }

func (d hostDeployer) peer(n registry.Node) (peer.ID, error) {
	id, err := peer.Decode(n.PeerID)
	if err != nil {
		return "", fmt.Errorf("node record with a bad peer ID %q: %w", n.PeerID, err)
	}
	for _, a := range n.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			d.h.Peerstore().AddAddr(id, m, peerstore.TempAddrTTL)
		}
	}
	return id, nil
}

func (d hostDeployer) Deploy(ctx context.Context, n registry.Node, r deploy.Request) (*registry.Instance, error) {
	id, err := d.peer(n)
	if err != nil {
		return nil, err
	}
	resp, err := deploy.Send(ctx, d.h, id, r)
	if err != nil {
		return nil, err
	}
	return resp.Instance, nil
}

func (d hostDeployer) Stop(ctx context.Context, n registry.Node, instanceID string) error {
	id, err := d.peer(n)
	if err != nil {
		return err
	}
	return deploy.Stop(ctx, d.h, id, instanceID)
}

// httpConnector speaks seed 001's connector protocol.
type httpConnector struct{ c *http.Client }

func newHTTPConnector(timeout time.Duration) httpConnector {
	return httpConnector{c: &http.Client{Timeout: timeout}}
}

// maxConnectorAnswer bounds what is read of a connector's answer.
const maxConnectorAnswer = 64 << 10

func (h httpConnector) Scale(ctx context.Context, baseURL, service string, number int) error {
	body, _ := json.Marshal(map[string]int{"number": number})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/service/"+url.PathEscape(service)+"/scale", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	_, err = h.do(req)
	return err
}

func (h httpConnector) Status(ctx context.Context, baseURL, service string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/service/"+url.PathEscape(service)+"/status", nil)
	if err != nil {
		return 0, err
	}
	b, err := h.do(req)
	if err != nil {
		return 0, err
	}
	var st struct {
		Running *int `json:"running_resources"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Running == nil || *st.Running < 0 {
		return 0, fmt.Errorf("status answer without a running_resources count: %.100q", b)
	}
	return *st.Running, nil
}

func (h httpConnector) do(req *http.Request) ([]byte, error) {
	resp, err := h.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxConnectorAnswer))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %.200s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}
