// Package forward carries HTTP requests between Physarum proxies over
// libp2p streams: the transport layer of the proxy.
//
// A client proxy sends each request to the service proxy of an instance
// with a Transport, which writes it on a stream of Protocol in HTTP/1.1
// wire format and reads the HTTP/1.1 response from the same stream. The
// service proxy runs a Server, which reads the request, sends it to the
// service's local address through a pooled keep-alive http.Transport and
// streams the response back. Bodies stream both ways (Content-Length
// framed, or chunked when their length is unknown); neither side buffers a
// whole body. Transport.Forward does a client proxy's whole job for one
// request on an http.ResponseWriter, including WebSocket-style upgrades,
// after which the stream is a raw pipe between the client's connection and
// the service's.
//
// Transport.RoundTripper is the same Transport as an http.RoundTripper, for
// http.Client, httputil.ReverseProxy and the rest of net/http: each request
// goes to the peer its context names (WithPeer), or to the one its URL
// names as libp2p://<peer-id>/path.
//
//	client := &http.Client{Transport: tr.RoundTripper()}
//	req, _ := http.NewRequestWithContext(forward.WithPeer(ctx, id), "GET", "http://svc/x", nil)
//	resp, err := client.Do(req) // or client.Get("libp2p://" + id.String() + "/x")
//
// A stream carries one exchange at a time and is kept for the next, as an
// HTTP/1.1 connection is: opening a stream (yamux handshake, protocol
// negotiation, resource accounting) costs more than a small request. The
// Server says "Connection: close" when it will not take another request on
// a stream (for instance when the service left part of a request body
// unread), and closes streams idle for KeepAliveTimeout; the Transport keeps
// a few idle streams per peer, for less time than that.
//
// Hop-by-hop headers (Connection and the headers it names, Keep-Alive,
// Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade) are dropped at every
// hop, except that an upgrade request keeps "Connection: Upgrade" and its
// Upgrade header, and "TE: trailers" passes. X-Forwarded-For gains the
// client's address, or the calling peer's ID when the client proxy gave
// none.
//
// Errors the proxies produce themselves are JSON bodies
// {"code": "...", "message": "..."} with the ErrorHeader header set to the
// code (see WriteError): 502 when an instance or its service cannot be
// reached, 504 when the service does not answer in time, 4xx for requests a
// Server will not forward. A failure after which the service cannot have
// seen the request is reported with an error for which IsNotSent is true:
// the caller may send the request to another instance.
//
// # Hand-written framing against net/http's client
//
// The Transport writes HTTP/1.1 itself and reads responses with
// http.ReadResponse. BenchmarkVsStdTransport compares it, in one run and
// against the same Server, with an http.Client over an http.Transport
// whose DialContext opens a stream of Protocol (go-libp2p's gostream makes
// it a net.Conn). On a shared 2-core machine (go1.26, median of 3):
//
//	go test -run '^$' -bench BenchmarkVsStdTransport -benchtime 1s -count 3 ./proxy/forward/
//
//	                       Transport.RoundTrip       RoundTripper         http.Transport
//	small GET, 1 client    113 µs/op 116 allocs    118 µs/op 122 allocs   136 µs/op 140 allocs
//	small GET, 8 clients    73 µs/op 115 allocs     73 µs/op 121 allocs    76 µs/op 139 allocs
//	1 MiB echo, 1 client   165 MB/s  475 allocs    156 MB/s  478 allocs   155 MB/s  546 allocs
//	1 MiB echo, 8 clients  202 MB/s  468 allocs    206 MB/s  475 allocs   212 MB/s  542 allocs
//
// (allocations count both proxies; B/op: 9.6 KB against 11.1 KB for a
// small GET, 93 KB against 134 KB for 1 MiB). The numbers do not make the
// hand-written framing necessary for speed: net/http's client is as fast
// within the noise of the machine, except for small requests from one
// client, where it takes about 20 µs (15%) more each, and it allocates
// about 20% more. What the hand-written client gives that http.Transport
// does not over a stream is behaviour: telling a request that never
// reached the service (IsNotSent) from one that may have, sending a
// request again when the Server had closed its kept stream, turning the
// Server's own "unavailable" answer into an IsNotSent error, and a 101
// whose Body can half-close the stream (CloseWrite).
//
// Choosing the instance, discovery and allocation are the proxy daemon's
// job; this package only moves requests.
package forward
