package handlers

import (
	"context"
	"testing"

	"function/eventing/eventingtest"
)

// BenchmarkIrrelevantEvent is the path taken by every event for a pod that is not a workflow pod
// (a 30 KiB Resource-mode delete): decoded through the registry and acknowledged. Target ≤ 20 µs
// and 0 API calls (the API counter fails the benchmark otherwise).
func BenchmarkIrrelevantEvent(b *testing.B) {
	h, calls, _ := newHandler(b, nil)
	e := eventingtest.Load(b, "pod-delete-nonworkflow.json")
	b.SetBytes(int64(len(e.Data())))
	b.ReportAllocs()
	for b.Loop() {
		if _, res := h.Handle(context.Background(), e); res != nil {
			b.Fatal(res)
		}
	}
	if calls.Count("") != 0 {
		b.Fatalf("%d API calls", calls.Count(""))
	}
}

// BenchmarkHealthyWorkflowPodUpdate is the commonest relevant-looking event: an update of a
// running workflow pod, decoded and dismissed without an API call.
func BenchmarkHealthyWorkflowPodUpdate(b *testing.B) {
	h, calls, _ := newHandler(b, nil)
	e := eventingtest.Load(b, "pod-update-running.json")
	b.SetBytes(int64(len(e.Data())))
	b.ReportAllocs()
	for b.Loop() {
		if _, res := h.Handle(context.Background(), e); res != nil {
			b.Fatal(res)
		}
	}
	if calls.Count("") != 0 {
		b.Fatalf("%d API calls", calls.Count(""))
	}
}
