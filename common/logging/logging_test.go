package logging

import (
	"bytes"
	"reflect"
	"testing"
)

// TestParseTextReadsWhatTheTextHandlerWrites: a line the daemons' own
// logger writes reads back as its pairs, quoted values with spaces too.
func TestParseTextReadsWhatTheTextHandlerWrites(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "allocator", "info", FormatText)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("fetched image", "image", "sha256:abc", "bytes", 1024, "reason", `a "quoted" one`)
	kv := ParseText(buf.String())
	want := map[string]string{"msg": "fetched image", "image": "sha256:abc", "bytes": "1024", "reason": `a "quoted" one`, "bin": "allocator", "level": "INFO"}
	for k, v := range want {
		if kv[k] != v {
			t.Errorf("%s = %q, want %q (line %q)", k, kv[k], v, buf.String())
		}
	}
	if got := ParseText(""); !reflect.DeepEqual(got, map[string]string{}) {
		t.Errorf("empty line: %v", got)
	}
}
