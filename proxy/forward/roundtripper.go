package forward

import (
	"context"
	"fmt"
	"net/http"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Scheme is the URL scheme whose host is a peer ID: a request for
// libp2p://<peer-id>/path?query through RoundTripper goes to the Server on
// that peer.
const Scheme = "libp2p"

type peerKey struct{}

// WithPeer returns a copy of ctx that sends a request made with it through
// RoundTripper to the Server on peer p, whatever its URL says.
func WithPeer(ctx context.Context, p peer.ID) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerFrom returns the peer WithPeer put in ctx.
func PeerFrom(ctx context.Context) (peer.ID, bool) {
	p, ok := ctx.Value(peerKey{}).(peer.ID)
	return p, ok && p != ""
}

// RoundTripper returns t as an http.RoundTripper, for http.Client,
// httputil.ReverseProxy and the rest of net/http's machinery. Each request
// goes to the peer its context names (see WithPeer) or, failing that, to
// the peer its URL names with Scheme (libp2p://<peer-id>/path), and
// otherwise fails with ErrNoPeer. A request with WithPeer may have any URL:
// its scheme is ignored, and its host is the Host header when req.Host is
// empty, as with an http.Transport. With Scheme and no req.Host, the Host
// header is the peer ID.
//
// RoundTrip follows the contract of http.RoundTripper: it does not modify
// the request, always closes its body (possibly after returning), and is
// bounded by the request's context, reading the response body included.
// Everything else is as for Transport.RoundTrip: in particular, a 101
// response's Body is the upgraded connection, an io.ReadWriteCloser, as
// with an http.Transport. Its CloseIdleConnections (called by
// http.Client.CloseIdleConnections) closes t's idle streams.
//
//	client := &http.Client{Transport: tr.RoundTripper()}
//	req, _ := http.NewRequestWithContext(forward.WithPeer(ctx, id), "GET", "http://svc/x", nil)
//	resp, err := client.Do(req)
//	// or: client.Get("libp2p://" + id.String() + "/x")
func (t *Transport) RoundTripper() http.RoundTripper { return roundTripper{t: t} }

type roundTripper struct{ t *Transport }

var _ http.RoundTripper = roundTripper{}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	p, err := targetPeer(req)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	return rt.t.RoundTrip(req.Context(), p, req)
}

func (rt roundTripper) CloseIdleConnections() { rt.t.CloseIdle() }

// targetPeer returns the peer req goes to.
func targetPeer(req *http.Request) (peer.ID, error) {
	if p, ok := PeerFrom(req.Context()); ok {
		return p, nil
	}
	if req.URL == nil || req.URL.Scheme != Scheme {
		return "", ErrNoPeer
	}
	p, err := peer.Decode(req.URL.Host)
	if err != nil {
		return "", fmt.Errorf("%s URL host %q: %w: %w", Scheme, req.URL.Host, ErrNoPeer, err)
	}
	return p, nil
}
