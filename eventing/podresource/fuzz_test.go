package podresource

import (
	"testing"

	"function/eventing"
	"function/eventing/eventingtest"
)

// FuzzDecode: any data under any Resource-mode type decodes to a valid signal or a Malformed
// error, never a panic.
func FuzzDecode(f *testing.F) {
	for _, name := range eventingtest.All(f) {
		e := eventingtest.Load(f, name)
		f.Add(e.DataEncoded, uint8(2))
	}
	f.Add([]byte(`{"metadata":{"labels":{"workflows.argoproj.io/workflow":1}}}`), uint8(0))
	f.Add([]byte(`"workflows.argoproj.io/workflow"`), uint8(1))
	types := []string{eventing.ResourceAdd, eventing.ResourceUpdate, eventing.ResourceDelete}
	f.Fuzz(func(t *testing.T, data []byte, ty uint8) {
		e := eventingtest.Event(types[int(ty)%len(types)], data)
		sig, err := Decoder{}.Decode(e)
		checkSignal(t, sig, err)
	})
}

func checkSignal(t *testing.T, sig eventing.Signal, err error) {
	t.Helper()
	if eventingtest.Refused(t, sig, err) {
		return
	}
	switch s := sig.(type) {
	case eventing.Ignore:
	case *eventing.PodChange:
		if s.Name == "" || s.Namespace == "" || s.Pod == nil || s.Pod.Labels == nil {
			t.Fatalf("incomplete PodChange %#v", s)
		}
	default:
		t.Fatalf("unexpected signal %T", sig)
	}
}
