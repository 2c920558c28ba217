package main

import (
	"encoding/json"
	"net"
	"net/http"
	"time"

	"github.com/physarum-p2p/physarum/common/instenv"
	"github.com/physarum-p2p/physarum/proxy/forward"
)

// statusHandler answers the local status path. srv is nil for a
// client-mode instance, which is ready as soon as it runs.
func statusHandler(srv *forward.Server, address string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := instenv.Status{Ready: true}
		if srv != nil {
			c, err := net.DialTimeout("tcp", address, 500*time.Millisecond)
			if err == nil {
				c.Close()
			}
			st.Ready = err == nil
			st.LastRequest, st.InFlight, st.Requests = srv.LastRequest(), srv.InFlight(), srv.Requests()
		}
		w.Header().Set("Content-Type", "application/json")
		if !st.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
}
