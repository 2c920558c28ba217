package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxPromResponse bounds a Prometheus answer: one number needs far less,
// and a query that returns thousands of series is refused anyway.
const maxPromResponse = 1 << 20

// PromQuerier asks a Prometheus server's HTTP API (/api/v1/query) for the
// value of a query that must come to one number.
type PromQuerier struct {
	// URL is the server's base URL (http://prometheus:9090).
	URL string
	// Client makes the requests (default: one with a 5 s timeout).
	Client *http.Client
}

// Query evaluates query now and returns its one number. A query that
// returns several series, or none, or a value that is not a finite
// number, is an error that says so.
func (p PromQuerier) Query(ctx context.Context, query string) (float64, error) {
	if p.URL == "" {
		return 0, errors.New("no Prometheus server: start registry-service with -prometheus-url")
	}
	cli := p.Client
	if cli == nil {
		cli = &http.Client{Timeout: 5 * time.Second}
	}
	u := strings.TrimRight(p.URL, "/") + "/api/v1/query?" + url.Values{"query": {query}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("prometheus query: %w", err)
	}
	resp, err := cli.Do(req)
	if err != nil {
		return 0, fmt.Errorf("prometheus query: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPromResponse+1))
	if err != nil {
		return 0, fmt.Errorf("prometheus query: read the answer: %w", err)
	}
	if len(b) > maxPromResponse {
		return 0, fmt.Errorf("prometheus query: answer larger than %d bytes", maxPromResponse)
	}
	v, err := ParsePromResponse(b)
	if err != nil {
		return 0, fmt.Errorf("prometheus query %q (HTTP %d): %w", query, resp.StatusCode, err)
	}
	return v, nil
}

// ParsePromResponse reads the one number out of an /api/v1/query answer:
// a scalar, or a vector of exactly one sample.
func ParsePromResponse(b []byte) (float64, error) {
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("not a Prometheus API answer: %w", err)
	}
	if r.Status != "success" {
		if r.Error != "" {
			return 0, fmt.Errorf("prometheus says: %.200s", r.Error)
		}
		return 0, fmt.Errorf("status %.40q, not success", r.Status)
	}
	var sample []any
	switch r.Data.ResultType {
	case "scalar":
		if err := json.Unmarshal(r.Data.Result, &sample); err != nil {
			return 0, fmt.Errorf("scalar result: %w", err)
		}
	case "vector":
		var series []struct {
			Value []any `json:"value"`
		}
		if err := json.Unmarshal(r.Data.Result, &series); err != nil {
			return 0, fmt.Errorf("vector result: %w", err)
		}
		switch len(series) {
		case 0:
			return 0, errors.New("the query returned no series; want one number")
		case 1:
			sample = series[0].Value
		default:
			return 0, fmt.Errorf("the query returned %d series; want one number (aggregate it, e.g. with sum())", len(series))
		}
	default:
		return 0, fmt.Errorf("result type %.40q; want a scalar or a vector of one series", r.Data.ResultType)
	}
	if len(sample) != 2 {
		return 0, fmt.Errorf("a sample of %d values; want [time, value]", len(sample))
	}
	s, ok := sample[1].(string)
	if !ok {
		return 0, errors.New("the sample's value is not a string")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("the value %.40q is not a finite number", s)
	}
	return v, nil
}
