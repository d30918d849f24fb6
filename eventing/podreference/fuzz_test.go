package podreference

import (
	"testing"

	"function/eventing"
	"function/eventing/eventingtest"
)

// FuzzDecode: any data under any Reference-mode type decodes to a PodChange naming a valid
// namespace and pod, or to a Malformed error; never a panic.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"pod-ref-delete.json", "pod-ref-update.json"} {
		f.Add(eventingtest.Load(f, name).DataEncoded, uint8(2))
	}
	f.Add([]byte(`{"kind":"Pod","name":"","namespace":"argo"}`), uint8(0))
	f.Add([]byte(`null`), uint8(1))
	types := []string{eventing.RefAdd, eventing.RefUpdate, eventing.RefDelete}
	f.Fuzz(func(t *testing.T, data []byte, ty uint8) {
		e := eventingtest.Event(types[int(ty)%len(types)], data)
		sig, err := Decoder{}.Decode(e)
		if eventingtest.Refused(t, sig, err) {
			return
		}
		pc, ok := sig.(*eventing.PodChange)
		if !ok || pc.Name == "" || pc.Namespace == "" || pc.Pod != nil {
			t.Fatalf("bad signal %#v", sig)
		}
	})
}
