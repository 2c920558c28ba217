package runtime

import (
	"errors"
	"strings"
	"testing"
)

func TestSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		ok   bool
	}{
		{Spec{ID: "web-1"}, true},
		{Spec{ID: "0"}, true},
		{Spec{ID: strings.Repeat("a", 63)}, true},
		{Spec{ID: "a", CPU: 500, Memory: 128, MaxRestarts: 3}, true},
		{Spec{ID: ""}, false},
		{Spec{ID: strings.Repeat("a", 64)}, false},
		{Spec{ID: "Web"}, false},
		{Spec{ID: "web_1"}, false},
		{Spec{ID: "../etc"}, false},
		{Spec{ID: "a b"}, false},
		{Spec{ID: "é"}, false},
		{Spec{ID: "a", CPU: -1}, false},
		{Spec{ID: "a", Memory: -1}, false},
		{Spec{ID: "a", MaxRestarts: -1}, false},
	} {
		err := tc.spec.Validate()
		if tc.ok && err != nil {
			t.Errorf("Validate(%+v) = %v; want nil", tc.spec, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("Validate(%+v) = %v; want ErrInvalidSpec", tc.spec, err)
		}
	}
}
