package main

import (
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/physarum-p2p/physarum/demos/demoservice"
)

const (
	// defaultK is how many standard deviations from the mean make an
	// anomaly, without -k. A smooth signal stays below it (the sensor's
	// sine wave reaches about 2.25 in a window of 10); a lone outlier in a
	// window of n readings can reach (n-1)/sqrt(n) standard deviations,
	// so with the default window of 10 (2.85) it is caught.
	defaultK = 2.5
	// minCount is how many readings a window needs before it can hold an
	// anomaly.
	minCount = 3
	// maxSummary bounds the body of POST /analyze.
	maxSummary = 64 << 10
	// wantSummary is what POST /analyze wants, for an empty body.
	wantSummary = `a JSON summary such as {"count":3,"mean":2,"min":1,"max":3,"stddev":0.8,"latest":3}`
)

// Verdicts.
const (
	verdictNormal  = "normal"
	verdictAnomaly = "anomaly"
)

// summary is what POST /analyze takes: the aggregator's description of its
// window. Every field is required; others are ignored.
type summary struct {
	Count  *int     `json:"count"`
	Mean   *float64 `json:"mean"`
	Min    *float64 `json:"min"`
	Max    *float64 `json:"max"`
	StdDev *float64 `json:"stddev"` // population standard deviation
	Latest *float64 `json:"latest"` // the newest reading
}

// verdict is what POST /analyze answers.
type verdict struct {
	Verdict   string  `json:"verdict"` // "normal" or "anomaly"
	Count     int     `json:"count"`
	Latest    float64 `json:"latest"`
	Mean      float64 `json:"mean"`
	StdDev    float64 `json:"stddev"`
	Deviation float64 `json:"deviation"` // |latest - mean|
	K         float64 `json:"k"`
	Threshold float64 `json:"threshold"` // k * stddev
}

// errorReply is the body of every error analytics answers. Field names the
// field of the summary at fault, when one is.
type errorReply struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// fieldError is a summary field that is missing or wrong.
type fieldError struct {
	field, msg string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// newAnalytics returns the handler of analytics, which calls a reading
// anomalous k standard deviations from the mean.
func newAnalytics(k float64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", demoservice.Healthz)
	mux.HandleFunc("POST /analyze", func(w http.ResponseWriter, r *http.Request) { analyze(w, r, k) })
	return mux
}

func analyze(w http.ResponseWriter, r *http.Request, k float64) {
	var s summary
	if err := demoservice.DecodeJSON(w, r, &s, maxSummary, wantSummary); err != nil {
		demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
		return
	}
	v, err := judge(s, k)
	if err != nil {
		reply := errorReply{Error: err.Error()}
		var fe *fieldError
		if errors.As(err, &fe) {
			reply.Field = fe.field
		}
		demoservice.WriteJSON(w, http.StatusBadRequest, reply)
		return
	}
	demoservice.WriteJSON(w, http.StatusOK, v)
}

// judge checks s and gives its verdict: the latest reading is an anomaly
// when the window holds at least minCount readings and the latest lies
// more than k standard deviations from their mean. It is deterministic.
func judge(s summary, k float64) (verdict, error) {
	for _, f := range []struct {
		name    string
		present bool
	}{
		{"count", s.Count != nil}, {"mean", s.Mean != nil}, {"min", s.Min != nil},
		{"max", s.Max != nil}, {"stddev", s.StdDev != nil}, {"latest", s.Latest != nil},
	} {
		if !f.present {
			return verdict{}, &fieldError{f.name, "missing"}
		}
	}
	switch {
	case *s.Count < 1:
		return verdict{}, &fieldError{"count", fmt.Sprintf("%d; want at least 1", *s.Count)}
	case *s.Min > *s.Max:
		return verdict{}, &fieldError{"min", fmt.Sprintf("%g is above max %g", *s.Min, *s.Max)}
	case *s.StdDev < 0:
		return verdict{}, &fieldError{"stddev", fmt.Sprintf("%g is negative", *s.StdDev)}
	case *s.Latest < *s.Min || *s.Latest > *s.Max:
		return verdict{}, &fieldError{"latest", fmt.Sprintf("%g is outside [min %g, max %g]", *s.Latest, *s.Min, *s.Max)}
	}
	v := verdict{
		Verdict:   verdictNormal,
		Count:     *s.Count,
		Latest:    *s.Latest,
		Mean:      *s.Mean,
		StdDev:    *s.StdDev,
		Deviation: math.Abs(*s.Latest - *s.Mean),
		K:         k,
		Threshold: k * *s.StdDev,
	}
	if v.Count >= minCount && v.Deviation > v.Threshold {
		v.Verdict = verdictAnomaly
	}
	return v, nil
}
