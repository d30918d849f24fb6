package podresource

import (
	"encoding/json"
	"testing"

	"function/eventing"
	"function/eventing/eventingtest"
	"function/internal/argoworkflow"
)

// BenchmarkDecodeWorkflowPodDelete decodes a 30 KiB Resource-mode delete of a workflow pod: the
// non-workflow fixture given the workflow label and node annotations.
func BenchmarkDecodeWorkflowPodDelete(b *testing.B) {
	e := eventingtest.Load(b, "pod-delete-nonworkflow.json")
	var obj map[string]any
	if err := json.Unmarshal(e.Data(), &obj); err != nil {
		b.Fatal(err)
	}
	md := obj["metadata"].(map[string]any)
	md["labels"].(map[string]any)[argoworkflow.LabelWorkflow] = "nightly-etl-7k2xq"
	md["annotations"].(map[string]any)[argoworkflow.AnnotationNodeID] = "nightly-etl-7k2xq-1770056762"
	data, _ := json.Marshal(obj)
	e.DataEncoded = data
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		sig, err := Decoder{}.Decode(e)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := sig.(*eventing.PodChange); !ok {
			b.Fatalf("got %T", sig)
		}
	}
}

// BenchmarkDecodeNonWorkflowPod is the decoder's share of the irrelevant-event path.
func BenchmarkDecodeNonWorkflowPod(b *testing.B) {
	e := eventingtest.Load(b, "pod-delete-nonworkflow.json")
	b.SetBytes(int64(len(e.Data())))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (Decoder{}).Decode(e); err != nil {
			b.Fatal(err)
		}
	}
}
