package main

import (
	"encoding/json"
	"math"
	"net/http"
	"sync"

	"github.com/physarum-p2p/physarum/demos/demoservice"
)

const (
	// defaultWindow is how many readings the window holds without WINDOW.
	defaultWindow = 10
	// maxWindow is the largest window.
	maxWindow = 100000
	// maxReading bounds the body of POST /ingest.
	maxReading = 64 << 10
	// wantReading is what POST /ingest wants, for an empty body.
	wantReading = `a JSON reading such as {"sensor":"s1","value":20.5}`
)

// reading is what POST /ingest takes; fields other than value are
// ignored.
type reading struct {
	Sensor string   `json:"sensor"`
	Value  *float64 `json:"value"`
}

// summary describes the readings in the window.
type summary struct {
	Count  int     `json:"count"`  // readings in the window
	Window int     `json:"window"` // readings the window holds at most
	Mean   float64 `json:"mean"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	StdDev float64 `json:"stddev"` // population standard deviation
	Latest float64 `json:"latest"` // the reading ingested last
}

// emptyStats is what GET /stats answers before the first reading.
type emptyStats struct {
	Count  int `json:"count"`
	Window int `json:"window"`
}

// ingestReply is what POST /ingest answers: the window after the reading,
// and what analytics made of it.
type ingestReply struct {
	Summary   summary         `json:"summary"`
	Analytics json.RawMessage `json:"analytics"`
}

// aggregator keeps a sliding window of the last readings and sends its
// summary to the next stage after each one. It is safe for concurrent
// use.
type aggregator struct {
	next *demoservice.Stage
	size int

	mu     sync.Mutex
	values []float64 // the last size values, oldest first
}

// newAggregator returns an aggregator whose window holds size readings
// (1 to maxWindow) and that sends summaries to next.
func newAggregator(size int, next *demoservice.Stage) *aggregator {
	return &aggregator{next: next, size: size, values: make([]float64, 0, size)}
}

// handler returns the aggregator's HTTP handler.
func (a *aggregator) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", demoservice.Healthz)
	mux.HandleFunc("POST /ingest", a.ingest)
	mux.HandleFunc("GET /stats", a.stats)
	return mux
}

// add puts v in the window, dropping the oldest reading when it is full,
// and returns the new summary.
func (a *aggregator) add(v float64) summary {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.values) == a.size {
		copy(a.values, a.values[1:])
		a.values = a.values[:a.size-1]
	}
	a.values = append(a.values, v)
	return a.summarize()
}

// summarize describes the window. Callers hold a.mu; the window is not
// empty.
func (a *aggregator) summarize() summary {
	s := summary{Count: len(a.values), Window: a.size, Min: a.values[0], Max: a.values[0], Latest: a.values[len(a.values)-1]}
	var sum float64
	for _, v := range a.values {
		sum += v
		s.Min = math.Min(s.Min, v)
		s.Max = math.Max(s.Max, v)
	}
	s.Mean = sum / float64(s.Count)
	var sq float64
	for _, v := range a.values {
		sq += (v - s.Mean) * (v - s.Mean)
	}
	s.StdDev = math.Sqrt(sq / float64(s.Count))
	return s
}

// ingest adds a reading to the window and answers analytics' verdict on
// the new window, or 502 naming the stage that failed. The reading stays
// in the window either way.
func (a *aggregator) ingest(w http.ResponseWriter, r *http.Request) {
	var rd reading
	if err := demoservice.DecodeJSON(w, r, &rd, maxReading, wantReading); err != nil {
		demoservice.WriteJSON(w, http.StatusBadRequest, demoservice.ErrorReply{Error: err.Error()})
		return
	}
	if rd.Value == nil {
		demoservice.WriteJSON(w, http.StatusBadRequest, demoservice.ErrorReply{Error: `the reading has no "value"`})
		return
	}
	s := a.add(*rd.Value)
	answer, err := a.next.Post(r.Context(), s)
	if err != nil {
		a.next.WriteError(w, err)
		return
	}
	demoservice.WriteJSON(w, http.StatusOK, ingestReply{Summary: s, Analytics: answer})
}

// stats answers the summary of the window.
func (a *aggregator) stats(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.values) == 0 {
		demoservice.WriteJSON(w, http.StatusOK, emptyStats{Window: a.size})
		return
	}
	demoservice.WriteJSON(w, http.StatusOK, a.summarize())
}
