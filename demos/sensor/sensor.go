package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/physarum-p2p/physarum/demos/demoservice"
)

// period is how many readings one cycle of the synthetic signal takes.
const period = 60

// reading is one measurement, as the sensor sends it to the aggregator.
type reading struct {
	Sensor    string    `json:"sensor"`
	Seq       uint64    `json:"seq"` // 1 for the first reading of this sensor
	Timestamp time.Time `json:"timestamp"`
	Value     float64   `json:"value"`
}

// reply is what GET /reading answers: the reading, and what the aggregator
// (and through it, analytics) made of it.
type reply struct {
	Reading    reading         `json:"reading"`
	Aggregator json.RawMessage `json:"aggregator"`
}

// sensor produces readings on request and sends each to the next stage.
type sensor struct {
	id   string
	next *demoservice.Stage
	now  func() time.Time
	seq  atomic.Uint64
}

// newSensor returns a sensor called id that sends its readings to next.
func newSensor(id string, next *demoservice.Stage) *sensor {
	return &sensor{id: id, next: next, now: time.Now}
}

// handler returns the sensor's HTTP handler.
func (s *sensor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", demoservice.Healthz)
	mux.HandleFunc("GET /reading", s.reading)
	return mux
}

// synthetic is the value of reading seq: a slow sine wave around 20 (one
// cycle every period readings), smooth enough never to look anomalous.
func synthetic(seq uint64) float64 {
	v := 20 + 5*math.Sin(2*math.Pi*float64(seq%period)/period)
	return math.Round(v*1000) / 1000
}

// reading produces a reading (the synthetic value, or ?value=) and answers
// what the chain made of it, or 502 naming the stage that failed.
func (s *sensor) reading(w http.ResponseWriter, r *http.Request) {
	override, hasOverride, err := valueParam(r)
	if err != nil {
		demoservice.WriteJSON(w, http.StatusBadRequest, demoservice.ErrorReply{Error: err.Error()})
		return
	}
	rd := reading{Sensor: s.id, Seq: s.seq.Add(1), Timestamp: s.now().UTC()}
	rd.Value = synthetic(rd.Seq)
	if hasOverride {
		rd.Value = override
	}
	answer, err := s.next.Post(r.Context(), rd)
	if err != nil {
		s.next.WriteError(w, err)
		return
	}
	demoservice.WriteJSON(w, http.StatusOK, reply{Reading: rd, Aggregator: answer})
}

// valueParam reads ?value=, which replaces the synthetic value (to inject
// an anomaly, say).
func valueParam(r *http.Request) (v float64, ok bool, err error) {
	q := r.URL.Query()
	if !q.Has("value") {
		return 0, false, nil
	}
	s := q.Get("value")
	v, err = strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false, fmt.Errorf("parameter value: %q is not a finite number", s)
	}
	return v, true, nil
}
