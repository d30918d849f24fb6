package record

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/workflowmeta"
)

func TestAnnotationsKeepTheNewest(t *testing.T) {
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "argo", UID: "u", Annotations: map[string]string{}}}
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	for i := range 25 {
		at := t0.Add(time.Duration(i) * time.Minute)
		wf.Annotations[workflowmeta.AnnotationDisruption] = AnnotationWith(wf, Record{NodeID: fmt.Sprintf("wf-%d", i), Reason: "r", Time: at})
		wf.Annotations[workflowmeta.AnnotationWarnings] = WarningsWith(wf, fmt.Sprintf("pod-%d", i), Warning{Reason: "r", Time: at})
	}
	recs, warns := Recorded(wf), Warnings(wf)
	if len(recs) != MaxRecords || len(warns) != MaxRecords {
		t.Fatalf("%d records, %d warnings, want %d each", len(recs), len(warns), MaxRecords)
	}
	if _, ok := recs["wf-4"]; ok {
		t.Error("oldest record kept")
	}
	if _, ok := warns["pod-24"]; !ok {
		t.Error("newest warning dropped")
	}
	// A hand-damaged annotation reads as empty and is rewritten whole.
	wf.Annotations[workflowmeta.AnnotationDisruption] = "{not json"
	if HasRecord(wf, "wf-24") || len(Recorded(wf)) != 0 {
		t.Error("damaged annotation not read as empty")
	}
}

func TestEventNamesAreStable(t *testing.T) {
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "argo", UID: "u"}}
	rec := Record{Pod: "p", NodeID: "wf-1", Reason: "EvictionByEvictionAPI", Actions: []string{"complete-task-result"}, Time: time.Now()}
	a, b := Event(wf, rec, "h1"), Event(wf, rec, "h2")
	w := WarningEvent(wf, "p", Warning{Reason: "SpotInterrupted", Time: time.Now()}, "h1")
	if a.Name != b.Name || a.Name == w.Name || a.InvolvedObject.Kind != "Workflow" || w.Reason != WarningEventReason {
		t.Fatalf("names %s %s %s", a.Name, b.Name, w.Name)
	}
}
