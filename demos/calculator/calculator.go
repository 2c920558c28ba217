package main

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/physarum-p2p/physarum/demos/demoservice"
)

// result is the answer to a calculation.
type result struct {
	Result float64 `json:"result"`
}

// errorReply is the body of every error calculator answers. Param names
// the query parameter at fault, when one is.
type errorReply struct {
	Error string `json:"error"`
	Param string `json:"param,omitempty"`
}

// errDivByZero is what div returns for b == 0.
var errDivByZero = errors.New("division by zero")

// newCalculator returns the handler of calculator.
func newCalculator() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", demoservice.Healthz)
	mux.HandleFunc("GET /add", calc(func(a, b float64) (float64, error) { return a + b, nil }))
	mux.HandleFunc("GET /sub", calc(func(a, b float64) (float64, error) { return a - b, nil }))
	mux.HandleFunc("GET /mul", calc(func(a, b float64) (float64, error) { return a * b, nil }))
	mux.HandleFunc("GET /div", calc(func(a, b float64) (float64, error) {
		if b == 0 {
			return 0, errDivByZero
		}
		return a / b, nil
	}))
	return mux
}

// calc answers op applied to the query parameters a and b.
func calc(op func(a, b float64) (float64, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		a, err := number(q, "a")
		if err != nil {
			demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: err.Error(), Param: "a"})
			return
		}
		b, err := number(q, "b")
		if err != nil {
			demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: err.Error(), Param: "b"})
			return
		}
		v, err := op(a, b)
		switch {
		case errors.Is(err, errDivByZero):
			demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: "division by zero: b is 0", Param: "b"})
			return
		case err != nil:
			demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
			return
		case math.IsInf(v, 0) || math.IsNaN(v):
			demoservice.WriteJSON(w, http.StatusBadRequest, errorReply{Error: "the result is too large for a float64"})
			return
		}
		demoservice.WriteJSON(w, http.StatusOK, result{Result: v})
	}
}

// number reads the query parameter name as a finite decimal number.
func number(q url.Values, name string) (float64, error) {
	vs := q[name]
	switch {
	case len(vs) == 0 || vs[0] == "":
		return 0, fmt.Errorf("missing parameter %s: give a number, e.g. %s=1.5", name, name)
	case len(vs) > 1:
		return 0, fmt.Errorf("parameter %s given %d times; give it once", name, len(vs))
	}
	v, err := strconv.ParseFloat(vs[0], 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("parameter %s: %q is not a finite number", name, vs[0])
	}
	return v, nil
}
