package demoservice

// This file is what the stages of the pipeline demo (sensor, aggregator)
// use: how a stage calls the next one through the local proxy, and how it
// reports that stage's failures.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// DefaultTimeout is the default -timeout of a stage: it bounds each
	// call to the next stage, the stages after it included.
	DefaultTimeout = 5 * time.Second
	// MaxTimeout is the largest -timeout a stage accepts.
	MaxTimeout = 10 * time.Minute
	// MaxAnswer bounds the answer of the next stage, in bytes.
	MaxAnswer = 1 << 20
	// ProxyErrorHeader marks errors the proxy produced itself, as opposed
	// to answers of the service behind it.
	ProxyErrorHeader = "X-Physarum-Error"
)

// ErrorReply is the body of every error a stage of the pipeline answers.
// On a 502, Stage names the stage of the pipeline that failed and Status
// is what the next stage answered (0 when it did not answer).
type ErrorReply struct {
	Error  string `json:"error"`
	Stage  string `json:"stage,omitempty"`
	Status int    `json:"status,omitempty"`
}

// CheckProxy checks the value of a stage's -proxy flag: it must be an
// http or https base URL.
func CheckProxy(proxy string) error {
	u, err := url.Parse(proxy)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("-proxy %q: want a base URL such as http://127.0.0.1:4201", proxy)
	}
	return nil
}

// CheckStageFlags checks the values of the flags every stage has:
// -proxy, when it is set (see CheckProxy), and -timeout, which must be
// more than 0 and at most MaxTimeout.
func CheckStageFlags(proxy string, timeout time.Duration) error {
	if proxy != "" {
		if err := CheckProxy(proxy); err != nil {
			return err
		}
	}
	if timeout <= 0 || timeout > MaxTimeout {
		return fmt.Errorf("-timeout %s: want more than 0s and at most %s", timeout, MaxTimeout)
	}
	return nil
}

// ProxyBase is the base URL of the local proxy, without a trailing
// slash: proxy (the -proxy flag, see CheckProxy) when it is set, else
// http://127.0.0.1:$PROXY_PORT. The error for a missing PROXY_PORT wraps
// ErrNoEnv.
func ProxyBase(proxy string, getenv func(string) string) (string, error) {
	if proxy != "" {
		return strings.TrimRight(proxy, "/"), nil
	}
	port, err := PortFromEnv(getenv, "PROXY_PORT")
	if errors.Is(err, ErrNoEnv) {
		return "", fmt.Errorf("%w; run the service under a Physarum proxy, or pass -proxy http://127.0.0.1:4201", err)
	}
	if err != nil {
		return "", err
	}
	return "http://127.0.0.1:" + strconv.Itoa(port), nil
}

// Stage is the next stage of the pipeline, a service reached through the
// local proxy. It is safe for concurrent use.
type Stage struct {
	name    string // the service: the proxy routes on it, errors name it
	url     string // where requests go: <proxy base>/<name><path>
	timeout time.Duration
	client  *http.Client
}

// NewStage returns the stage that serves path of service name behind the
// proxy at base (see ProxyBase), and gives it timeout to answer.
func NewStage(base, name, path string, timeout time.Duration) *Stage {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // talk to the local proxy itself, never through $HTTP_PROXY
	return &Stage{
		name:    name,
		url:     base + "/" + name + path,
		timeout: timeout,
		client:  &http.Client{Transport: tr},
	}
}

// Name is the service the stage is: the proxy routes on it, errors name
// it.
func (s *Stage) Name() string { return s.name }

// URL is where the stage's requests go: <proxy base>/<name><path>.
func (s *Stage) URL() string { return s.url }

// StageError is a failure of the next stage, or of one after it; the
// service answers it 502 with Reply().
type StageError struct {
	Stage  string // the stage that failed
	Status int    // what the next stage answered; 0 if it did not
	Msg    string // the error message
}

// Error is the message.
func (e *StageError) Error() string { return e.Msg }

// Reply is the body to answer e with.
func (e *StageError) Reply() ErrorReply {
	return ErrorReply{Error: e.Msg, Stage: e.Stage, Status: e.Status}
}

// WriteError answers err, an error of Post, with 502 and the ErrorReply
// naming the stage that failed.
func (s *Stage) WriteError(w http.ResponseWriter, err error) {
	var se *StageError
	if !errors.As(err, &se) { // Post returns only *StageErrors
		se = &StageError{Stage: s.name, Msg: err.Error()}
	}
	WriteJSON(w, http.StatusBadGateway, se.Reply())
}

// Post sends v to the stage as JSON and returns its JSON answer. Every
// error it returns is a *StageError.
func (s *Stage) Post(ctx context.Context, v any) (json.RawMessage, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, &StageError{Stage: s.name, Msg: fmt.Sprintf("encode the request to %s: %v", s.name, err)}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return nil, &StageError{Stage: s.name, Msg: fmt.Sprintf("request to %s: %v", s.name, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, s.callFailed(ctx, 0, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer+1))
	switch {
	case err != nil:
		return nil, s.callFailed(ctx, resp.StatusCode, err)
	case len(b) > MaxAnswer:
		return nil, &StageError{Stage: s.name, Status: resp.StatusCode,
			Msg: fmt.Sprintf("%s answered more than %d bytes", s.name, MaxAnswer)}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, s.refused(resp, b)
	case !json.Valid(b):
		return nil, &StageError{Stage: s.name, Status: resp.StatusCode,
			Msg: fmt.Sprintf("%s answered %d with a body that is not JSON: %s", s.name, resp.StatusCode, snippet(b))}
	}
	return b, nil
}

// callFailed reports a request that got no complete answer.
func (s *Stage) callFailed(ctx context.Context, status int, err error) *StageError {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &StageError{Stage: s.name, Status: status, Msg: fmt.Sprintf("%s did not answer within %s", s.name, s.timeout)}
	}
	return &StageError{Stage: s.name, Status: status, Msg: fmt.Sprintf("%s is unreachable: %v", s.name, err)}
}

// refused reports an answer that is not a 2xx. When the next stage says
// that a stage after it failed, that stage is the one named.
func (s *Stage) refused(resp *http.Response, body []byte) *StageError {
	var inner struct {
		Error   string `json:"error"`   // from a stage
		Stage   string `json:"stage"`   // from a stage that reports a later one
		Message string `json:"message"` // from the proxy
		Code    string `json:"code"`    // from the proxy
	}
	failed, detail := s.name, ""
	if err := json.Unmarshal(body, &inner); err == nil {
		switch {
		case inner.Error != "":
			detail = inner.Error
			if inner.Stage != "" {
				failed = inner.Stage
			}
		case inner.Message != "":
			detail = inner.Message
			if inner.Code != "" {
				detail += " (" + inner.Code + ")"
			}
		}
	}
	if detail == "" {
		detail = snippet(body)
	}
	who := s.name
	if resp.Header.Get(ProxyErrorHeader) != "" {
		who = "the proxy, on the way to " + s.name + ","
	}
	return &StageError{Stage: failed, Status: resp.StatusCode,
		Msg: fmt.Sprintf("%s answered %d: %s", who, resp.StatusCode, detail)}
}

// snippet is the start of an answer, fit for an error message.
func snippet(b []byte) string {
	const limit = 200
	s := strings.TrimSpace(string(b))
	switch {
	case s == "":
		return "(no body)"
	case !utf8.ValidString(s):
		return "(a binary body)"
	case len(s) > limit:
		return strings.ToValidUTF8(s[:limit], "") + "..."
	}
	return s
}
