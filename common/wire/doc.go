// Package wire is the framing and request/response layer every Physarum
// protocol speaks over libp2p streams.
//
// A frame is one version byte, a four-byte big-endian payload length and the
// payload (JSON). Readers refuse frames above a size limit before allocating,
// so a peer cannot make us buffer more than the limit. Every stream served
// through a Server, and every Call, runs under a deadline; errors cross the
// wire as {"code": "...", "message": "..."} and come back as *Error.
package wire
