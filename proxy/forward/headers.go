package forward

import (
	"bufio"
	"net"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// ErrorHeader marks a response the proxies produced themselves; its value
// is the error's code, the same as in the JSON body. A Server drops it from
// the service's own responses, so it always means a proxy spoke.
const ErrorHeader = "X-Physarum-Error"

// hopHeaders concern one connection only (RFC 9110 7.6.1): a proxy drops
// them, with every header the Connection header names and every Proxy-*.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// hopFilter decides which headers of one message cross a hop.
type hopFilter struct {
	// named are the headers the Connection header lists.
	named []string
	// upgrade is the Upgrade header's value when the message is an upgrade
	// request or a 101 response: "Connection: Upgrade" and it then pass.
	upgrade string
	// teTrailers is set when TE asks for trailers, which passes on as
	// "TE: trailers" (as net/http/httputil.ReverseProxy does).
	teTrailers bool
}

// newHopFilter reads h's Connection header. upgradeOK says whether this
// message may keep its upgrade (a request, or a 101 response).
func newHopFilter(h http.Header, upgradeOK bool) hopFilter {
	var f hopFilter
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				f.named = append(f.named, tok)
			}
		}
	}
	if upgradeOK {
		f.upgrade = upgradeOf(h)
	}
	f.teTrailers = httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	return f
}

// upgradeOf returns the protocol h asks to switch to: its Upgrade header
// when Connection names "upgrade", and "" otherwise.
func upgradeOf(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade") {
		return ""
	}
	return strings.Join(h["Upgrade"], ", ")
}

// hop reports whether header key stops at this hop.
func (f *hopFilter) hop(key string) bool {
	k := textproto.CanonicalMIMEHeaderKey(key)
	if hopHeaders[k] {
		return true
	}
	if len(k) > len("Proxy-") && strings.EqualFold(k[:len("Proxy-")], "Proxy-") {
		return true
	}
	for _, n := range f.named {
		if strings.EqualFold(n, k) {
			return true
		}
	}
	return false
}

// copyTo adds src's end-to-end headers to dst, with the upgrade and TE
// headers that pass.
func (f *hopFilter) copyTo(dst, src http.Header) {
	for k, vs := range src {
		if f.hop(k) {
			continue
		}
		dst[k] = append(dst[k], vs...)
	}
	f.addKept(dst)
}

func (f *hopFilter) addKept(dst http.Header) {
	if f.upgrade != "" {
		dst["Connection"] = []string{"Upgrade"}
		dst["Upgrade"] = []string{f.upgrade}
	}
	if f.teTrailers {
		dst["Te"] = []string{"trailers"}
	}
}

// write writes h's end-to-end header lines, with the upgrade and TE
// headers that pass. Host and Content-Length are left to the caller, which
// frames the message itself. Invalid names are dropped and line breaks in
// values become spaces, as http.Header.Write does, so that a header cannot
// smuggle a second one.
func (f *hopFilter) write(bw *bufio.Writer, h http.Header) {
	for k, vs := range h {
		if f.hop(k) || framing(k) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			writeHeaderLine(bw, k, v)
		}
	}
	if f.upgrade != "" {
		writeHeaderLine(bw, "Connection", "Upgrade")
		writeHeaderLine(bw, "Upgrade", f.upgrade)
	}
	if f.teTrailers {
		writeHeaderLine(bw, "Te", "trailers")
	}
}

func framing(k string) bool {
	return strings.EqualFold(k, "Content-Length") || strings.EqualFold(k, "Host")
}

func writeHeaderLine(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(textproto.TrimString(v))
	bw.WriteString("\r\n")
}

// validHeaders reports whether every name and value in h may appear on
// the wire; http.Transport refuses a request otherwise.
func validHeaders(h http.Header) bool {
	for k, vs := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// addForwardedFor appends addr (a client's host:port, or a bare name) to
// h's X-Forwarded-For.
func addForwardedFor(h http.Header, addr string) {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	if addr == "" {
		return
	}
	if prior := h["X-Forwarded-For"]; len(prior) > 0 {
		addr = strings.Join(prior, ", ") + ", " + addr
	}
	h["X-Forwarded-For"] = []string{addr}
}

// trailerKeys lists the trailers a message declares.
func trailerKeys(t http.Header) []string {
	if len(t) == 0 {
		return nil
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		if httpguts.ValidHeaderFieldName(k) {
			keys = append(keys, k)
		}
	}
	return keys
}
