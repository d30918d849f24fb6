package nodedelete

import (
	"testing"

	"function/eventing"
	"function/eventing/eventingtest"
)

// FuzzDecode: any data, for either kind and mode, decodes to a NodeGone naming a valid Node, an
// Ignore, or a Malformed error; never a panic.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"node-delete.json", "node-delete-unmanaged.json", "nodeclaim-delete.json", "node-ref-delete.json"} {
		f.Add(eventingtest.Load(f, name).DataEncoded, uint8(0))
	}
	f.Add([]byte(`{"kind":"NodeClaim","metadata":{"name":"a"},"status":{"nodeName":"-bad-"}}`), uint8(1))
	decoders := []Decoder{{Kind: "Node"}, {Kind: "NodeClaim"}, {Kind: "Node", Reference: true}, {Kind: "NodeClaim", Reference: true}}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		d := decoders[int(which)%len(decoders)]
		e := eventingtest.Event(eventing.ResourceDelete, data)
		sig, err := d.Decode(e)
		if eventingtest.Refused(t, sig, err) {
			return
		}
		switch s := sig.(type) {
		case eventing.Ignore:
		case *eventing.NodeGone:
			if s.NodeName == "" || s.Kind != d.Kind {
				t.Fatalf("bad signal %#v", s)
			}
		default:
			t.Fatalf("unexpected %T", sig)
		}
	})
}
