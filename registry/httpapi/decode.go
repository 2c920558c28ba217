package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/physarum-p2p/physarum/registry"
)

// The request decoders. Each refuses what is not one JSON object (empty,
// malformed, another kind of value, trailing data) with a bad_request
// naming what is wrong. The scale and compute bodies are Physarum's own
// and refuse unknown fields; a service body is seed 001's connector format
// with ServiceInfo's fields beside it, so it takes any field
// (registry.DecodeConnectorService).

// scaleRequest is a decoded POST /service/<name>/scale body.
type scaleRequest struct {
	Number  int
	Compute string
}

// decodeScale reads {"number": 3, "compute": "site-a"}. number is
// mandatory, a whole number at least 0, given as a JSON number or as a
// string holding one (httpie's number=3 sends "3"); compute may be absent.
func decodeScale(body []byte) (scaleRequest, error) {
	var f struct {
		Number  json.RawMessage `json:"number"`
		Compute string          `json:"compute"`
	}
	if err := decodeStrict(body, &f, "a scale takes number and compute"); err != nil {
		return scaleRequest{}, err
	}
	n, err := parseNumber(f.Number)
	if err != nil {
		return scaleRequest{}, err
	}
	if f.Compute != "" {
		if err := registry.ValidateComputeName(f.Compute); err != nil {
			return scaleRequest{}, err
		}
	}
	return scaleRequest{Number: n, Compute: f.Compute}, nil
}

// parseNumber reads scale's number: 3 or "3"; not 3.5, 3e0, -1 or "three".
func parseNumber(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, errorf("invalid number: missing: say how many instances, e.g. {\"number\": 3}")
	}
	shown := cut(string(raw))
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errorf("invalid number: %s is not a string", shown)
		}
	} else if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return 0, errorf("invalid number: %s: want a whole number, e.g. 3 or \"3\"", shown)
	}
	n, err := strconv.Atoi(s)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, errorf("invalid number: %s is out of range", shown)
	case err != nil:
		if _, ferr := strconv.ParseFloat(s, 64); ferr == nil {
			return 0, errorf("invalid number: %s is not a whole number", shown)
		}
		return 0, errorf("invalid number: %s: want a whole number, e.g. 3 or \"3\"", shown)
	case n < 0:
		return 0, errorf("invalid number: %d is negative", n)
	}
	return n, nil
}

// decodeCompute reads a compute definition: {"name", "connector"} for
// POST /compute (name is empty), {"connector"} for PUT /compute/<name>,
// where a name in the body must be the URL's. The result is validated.
func decodeCompute(body []byte, name string) (registry.Compute, error) {
	var f struct {
		Name      *string `json:"name"`
		Connector string  `json:"connector"`
	}
	if err := decodeStrict(body, &f, "a compute takes name and connector"); err != nil {
		return registry.Compute{}, err
	}
	c := registry.Compute{Name: name, Connector: f.Connector}
	switch {
	case name == "" && (f.Name == nil || *f.Name == ""):
		return registry.Compute{}, errorf("invalid name: missing: a compute needs a name")
	case name == "":
		c.Name = *f.Name
	case f.Name != nil && *f.Name != name:
		return registry.Compute{}, errorf("invalid name: %s in the body, %s in the URL", quote(*f.Name), quote(name))
	}
	if c.Connector == "" {
		return registry.Compute{}, errorf("invalid connector: missing: want physarum, physarum:labels?key=value, physarum:node?name=N or the http:// URL of a Genisys connector")
	}
	if err := c.Validate(); err != nil {
		return registry.Compute{}, err
	}
	return c, nil
}

// decodeService reads a service in seed 001's connector format (plus
// ServiceInfo's fields); name is the URL's for PUT /service/<name>, empty
// for POST /service.
func decodeService(body []byte, name string) (registry.ConnectorService, error) {
	if err := checkObject(body); err != nil {
		return registry.ConnectorService{}, err
	}
	return registry.DecodeConnectorService(body, name)
}

// checkObject refuses a body that is not exactly one JSON object.
func checkObject(body []byte) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return errorf("invalid body: empty: want a JSON object")
	}
	var raw json.RawMessage
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return errorf("invalid body: malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
		}
		return errorf("invalid body: malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if trimmed[0] != '{' {
		return errorf("invalid body: want a JSON object, got %s", kind(trimmed[0]))
	}
	return nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields
// (hint says which are known) and values of the wrong type.
func decodeStrict(body []byte, v any, hint string) error {
	if err := checkObject(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
		if te.Type == reflect.TypeFor[registry.Duration]() {
			return errorf("invalid %s: %s", te.Field, te.Value) // it says what it wants
		}
		return errorf("invalid %s: want %s, got %s", te.Field, typeName(te.Type), withArticle(te.Value))
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return errorf("invalid body: unknown field %s: %s", field, hint)
	}
	return errorf("invalid body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// typeName names the JSON value a Go type takes, with its article.
func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return "a " + t.Kind().String()
}

// withArticle puts "a" or "an" before what encoding/json says it found
// ("string", "number 3.5", "object").
func withArticle(v string) string {
	if v != "" && strings.ContainsRune("aeiou", rune(v[0])) {
		return "an " + v
	}
	return "a " + v
}

// kind names the JSON value that starts with c.
func kind(c byte) string {
	switch {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	}
	return "a number"
}

// quote shows a string from a request in a message, cut short when long.
func quote(s string) string { return cut(strconv.Quote(s)) }

// cut shortens what a message shows of a request.
func cut(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// splitStrategy takes the "strategy" object out of a service body: what
// is left is the definition, and the strategy (nil: none) says that the
// PUT is an update to roll out.
func splitStrategy(body []byte) ([]byte, *registry.Strategy, error) {
	if err := checkObject(body); err != nil {
		return nil, nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, nil, errorf("invalid body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	raw, ok := fields["strategy"]
	if !ok {
		return body, nil, nil
	}
	delete(fields, "strategy")
	var st registry.Strategy
	if err := decodeStrict(raw, &st, "a strategy takes type, max_parallel, min_healthy_time, healthy_deadline, progress_deadline and auto_revert"); err != nil {
		return nil, nil, fmt.Errorf("strategy: %w", err)
	}
	if err := st.Validate(); err != nil {
		return nil, nil, err
	}
	rest, err := json.Marshal(fields)
	if err != nil {
		return nil, nil, err
	}
	return rest, &st, nil
}
