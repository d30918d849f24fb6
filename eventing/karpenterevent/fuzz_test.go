package karpenterevent

import (
	"testing"

	"function/eventing"
	"function/eventing/eventingtest"
)

// FuzzDecode: any data decodes to a Disruption naming exactly one object, an Ignore, or a
// Malformed error; never a panic.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"karpenter-event-pod-evicted.json", "karpenter-event-node-disruption-terminating.json",
		"karpenter-event-nodeclaim-spot-interrupted.json", "event-kubelet-killing.json",
		"karpenter-kwok-pod-evicted-drifted.json", "karpenter-kwok-node-finalized.json"} {
		f.Add(eventingtest.Load(f, name).DataEncoded)
	}
	f.Add([]byte(`{"source":{"component":"karpenter"},"reason":"Evicted","involvedObject":{"kind":"Pod"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := eventingtest.Event(eventing.ResourceAdd, data)
		sig, err := Decoder{}.Decode(e)
		if eventingtest.Refused(t, sig, err) {
			return
		}
		switch s := sig.(type) {
		case eventing.Ignore:
		case *eventing.Disruption:
			n := 0
			for _, v := range []string{s.PodName, s.NodeName, s.NodeClaimName} {
				if v != "" {
					n++
				}
			}
			if n != 1 || (s.PodName != "" && s.PodNamespace == "") || s.Reason == "" {
				t.Fatalf("bad disruption %+v", s)
			}
		default:
			t.Fatalf("unexpected %T", sig)
		}
	})
}
