package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestScrape(t *testing.T) {
	const text = `# HELP etcd_server_request_duration_seconds x
# TYPE etcd_server_request_duration_seconds histogram
etcd_server_request_duration_seconds_count{success="true",type="Range"} 8
etcd_server_request_duration_seconds_count{success="true",type="Put"} 1
etcd_server_request_duration_seconds_count{success="false",type="Range"} 2
physarum_reconciler_passes_total{result="ok"} 3
process_cpu_seconds_total 0.07
etcd_mvcc_range_total 1.5e+06
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(text)) }))
	defer srv.Close()
	p, err := scrape(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.sum("etcd_server_request_duration_seconds_count"); got != 11 {
		t.Errorf("sum of the request counts = %v, want 11", got)
	}
	by := p.by("etcd_server_request_duration_seconds_count", "type")
	if len(by) != 2 || by["Range"] != 10 || by["Put"] != 1 {
		t.Errorf("by type = %v", by)
	}
	if p.sum("process_cpu_seconds_total") != 0.07 || p.sum("etcd_mvcc_range_total") != 1.5e6 || p.sum("nothing") != 0 {
		t.Errorf("plain series: %v", p)
	}
	if got := p.by("process_cpu_seconds_total", "type"); got[""] != 0.07 {
		t.Errorf("a series without labels is counted under \"\": %v", got)
	}
}

func TestPromLabel(t *testing.T) {
	for _, c := range []struct{ series, name, want string }{
		{`m{a="1",type="Range"}`, "type", "Range"},
		{`m{type="Put"}`, "type", "Put"},
		{`m{subtype="x",type="y"}`, "type", "y"},
		{`m{a="1"}`, "type", ""},
		{`m`, "type", ""},
	} {
		if got := promLabel(c.series, c.name); got != c.want {
			t.Errorf("promLabel(%q, %q) = %q, want %q", c.series, c.name, got, c.want)
		}
	}
}
