package pingsource

import (
	"testing"

	"function/eventing"
	"function/eventing/eventingtest"
)

// FuzzDecode: a ping with any data is a Sweep; never an error, never a panic.
func FuzzDecode(f *testing.F) {
	f.Add(eventingtest.Load(f, "ping-sweep.json").DataEncoded)
	f.Add([]byte(nil))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sig, err := Decoder{}.Decode(eventingtest.Event(Type, data))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := sig.(*eventing.Sweep); !ok {
			t.Fatalf("got %T", sig)
		}
	})
}
