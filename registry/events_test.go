package registry_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/physarum-p2p/physarum/common/wire"
	"github.com/physarum-p2p/physarum/registry"
)

func TestParseEventID(t *testing.T) {
	for id, want := range map[string]struct {
		index int64
		n     int
		ok    bool
	}{
		"12-0": {12, 0, true}, "1-3": {1, 3, true}, "9223372036854775807-2": {9223372036854775807, 2, true},
		"0-0": {}, "12": {}, "-1-0": {}, "12--1": {}, "+12-0": {}, "12-+1": {}, "12-0-0": {}, "": {}, "a-b": {},
		"99999999999999999999-0": {}, " 12-0": {},
	} {
		index, n, ok := registry.ParseEventID(id)
		if ok != want.ok || index != want.index || n != want.n {
			t.Errorf("ParseEventID(%q) = %d, %d, %v; want %d, %d, %v", id, index, n, ok, want.index, want.n, want.ok)
		}
		if ok && registry.EventID(index, n) != id {
			t.Errorf("EventID(%d, %d) = %q, want %q", index, n, registry.EventID(index, n), id)
		}
	}
}

func TestGoneErrorMatchesCodeGone(t *testing.T) {
	err := fmt.Errorf("read events: %w", &registry.GoneError{Index: 5, Oldest: 40})
	if !errors.Is(err, &wire.Error{Code: wire.CodeGone}) || wire.CodeOf(err) != wire.CodeGone {
		t.Errorf("%v does not match code gone", err)
	}
	if ge, ok := errors.AsType[*registry.GoneError](err); !ok || ge.Oldest != 40 {
		t.Errorf("errors.As: %v, %v", ge, ok)
	}
	if want := "gone: index 5 is compacted away; the oldest index still available is 40: resync from the list operations, then resume from index 40"; wire.MessageOf(err) != want {
		t.Errorf("message %q, want %q", wire.MessageOf(err), want)
	}
}

func TestEventsRequestValidate(t *testing.T) {
	for _, r := range []registry.EventsRequest{{}, {Index: 4, Topics: []string{"instance:hello", "node"}}, {After: "4-1"}} {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	for _, r := range []registry.EventsRequest{{Index: -1}, {After: "4"}, {Topics: []string{"instances"}}} {
		if err := r.Validate(); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", r, err)
		}
	}
}
