package autoscale

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestParsePromResponse(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       float64
		err        string
	}{
		{"vector of one", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733500000.1,"212.5"]}]}}`, 212.5, ""},
		{"scalar", `{"status":"success","data":{"resultType":"scalar","result":[1733500000,"3"]}}`, 3, ""},
		{"several series", `{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}`, 0, "2 series"},
		{"nothing", `{"status":"success","data":{"resultType":"vector","result":[]}}`, 0, "no series"},
		{"matrix", `{"status":"success","data":{"resultType":"matrix","result":[]}}`, 0, "result type"},
		{"error", `{"status":"error","errorType":"bad_data","error":"parse error at char 3"}`, 0, "parse error at char 3"},
		{"NaN", `{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}`, 0, "not a finite number"},
		{"+Inf", `{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}`, 0, "not a finite number"},
		{"number not string", `{"status":"success","data":{"resultType":"scalar","result":[1,3]}}`, 0, "not a string"},
		{"garbage", `<html>`, 0, "not a Prometheus API answer"},
	} {
		got, err := ParsePromResponse([]byte(tc.body))
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestPromQuerierAsksTheServer(t *testing.T) {
	var value atomic.Value
	value.Store("7")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" || r.URL.Query().Get("query") != `sum(rate(x[1m]))` {
			http.Error(w, `{"status":"error","error":"unexpected request"}`, http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"%s"]}]}}`, value.Load())
	}))
	defer srv.Close()
	q := PromQuerier{URL: srv.URL + "/"}
	if v, err := q.Query(t.Context(), `sum(rate(x[1m]))`); err != nil || v != 7 {
		t.Fatalf("%v, %v", v, err)
	}
	value.Store("12.5")
	if v, err := q.Query(t.Context(), `sum(rate(x[1m]))`); err != nil || v != 12.5 {
		t.Fatalf("%v, %v", v, err)
	}
	if _, err := q.Query(t.Context(), `other`); err == nil || !strings.Contains(err.Error(), "unexpected request") {
		t.Fatalf("a refused query: %v", err)
	}
	if _, err := (PromQuerier{}).Query(t.Context(), "x"); err == nil || !strings.Contains(err.Error(), "-prometheus-url") {
		t.Fatalf("without a URL: %v", err)
	}
}

// FuzzParsePromResponse: no answer panics the parser, and what it accepts
// is a finite number.
func FuzzParsePromResponse(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"2"]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}`))
	f.Add([]byte(`{"status":"error","error":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParsePromResponse(b)
		if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("accepted %v", v)
		}
	})
}
