// Package eventingtest loads the CloudEvent fixtures in eventing/testdata for tests and benchmarks
// of every package.
package eventingtest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"function/eventing"
)

// Dir is the fixtures folder.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// Load reads a structured-mode CloudEvent JSON fixture by file name.
func Load(tb testing.TB, name string) event.Event {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(), name))
	if err != nil {
		tb.Fatal(err)
	}
	var e event.Event
	if err := json.Unmarshal(b, &e); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return e
}

// All returns the file names of every fixture.
func All(tb testing.TB) []string {
	tb.Helper()
	m, err := filepath.Glob(filepath.Join(Dir(), "*.json"))
	if err != nil || len(m) == 0 {
		tb.Fatalf("no fixtures in %s: %v", Dir(), err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// Event returns a minimal valid CloudEvent of type ceType carrying data as JSON, the way fuzz
// targets feed arbitrary bytes to a decoder.
func Event(ceType string, data []byte) event.Event {
	e := event.New()
	e.SetID("fuzz")
	e.SetSource("https://10.96.0.1:443")
	e.SetType(ceType)
	e.SetDataContentType("application/json")
	e.DataEncoded = data
	return e
}

// Refused checks a decoder's answer when it returned an error: the error must wrap
// eventing.ErrMalformed and come with no signal. It reports whether the event was refused.
func Refused(tb testing.TB, sig eventing.Signal, err error) bool {
	tb.Helper()
	if err == nil {
		return false
	}
	if !errors.Is(err, eventing.ErrMalformed) || sig != nil {
		tb.Fatalf("got %#v, %v; want a Malformed error and no signal", sig, err)
	}
	return true
}
