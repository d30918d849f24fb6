package repair

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
)

func TestRecordsOnePerNode(t *testing.T) {
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "argo", UID: "u", Annotations: map[string]string{}}}
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	for i := range 25 {
		at := t0.Add(time.Duration(i) * time.Minute)
		id := fmt.Sprintf("wf-%d", 1000000+i)
		wf.Annotations[AnnotationKey(wf.Name, id)] = Record{NodeID: id, Reason: "r", Time: at}.Marshal()
		wf.Annotations[argoworkflow.AnnotationWarnings] = WarningsWith(wf, fmt.Sprintf("pod-%d", i), Warning{Reason: "r", Time: at})
	}
	recs, warns := Recorded(wf), Warnings(wf)
	if len(recs) != 25 || len(warns) != MaxRecords {
		t.Fatalf("%d records, %d warnings, want 25 and %d", len(recs), len(warns), MaxRecords)
	}
	if !HasRecord(wf, "wf-1000024") || HasRecord(wf, "wf-2") {
		t.Error("HasRecord")
	}
	if _, ok := warns["pod-24"]; !ok {
		t.Error("newest warning dropped")
	}
	// A hand-damaged annotation reads as no record of that node only.
	wf.Annotations[AnnotationKey(wf.Name, "wf-1000024")] = "{not json"
	if HasRecord(wf, "wf-1000024") || len(Recorded(wf)) != 24 {
		t.Error("damaged annotation not skipped")
	}
}

func TestAnnotationKeys(t *testing.T) {
	long := strings.Repeat("w", 250)
	cases := []struct{ wf, node, want string }{
		{"nightly-etl-7k2xq", "nightly-etl-7k2xq-1770056762", "argo-disruption-handler.dev/disruption.1770056762"},
		{"nightly-etl-7k2xq", "nightly-etl-7k2xq", "argo-disruption-handler.dev/disruption.root"},
		{long, long + "-4294967295", "argo-disruption-handler.dev/disruption.4294967295"},
		{"wf", "other-123", ""}, // not of this workflow's form: hashed
	}
	for _, c := range cases {
		got := AnnotationKey(c.wf, c.node)
		if c.want != "" && got != c.want {
			t.Errorf("AnnotationKey(%q, %q) = %q, want %q", c.wf, c.node, got, c.want)
		}
		if errs := validation.IsQualifiedName(got); len(errs) > 0 {
			t.Errorf("%q is not a valid annotation key: %v", got, errs)
		}
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

// A workflow that loses many pods keeps at most MaxRecords records; the oldest are folded into
// a count, preconditioned on the version read.
func TestFoldPatch(t *testing.T) {
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "wide", ResourceVersion: "42", Annotations: map[string]string{AnnotationFolded: "3", "other": "kept"}}}
	base := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	for i := range MaxRecords + 2 {
		id := fmt.Sprintf("wide-%d", 1000+i)
		wf.Annotations[AnnotationKey("wide", id)] = Record{NodeID: id, Time: base.Add(time.Duration(i) * time.Second)}.Marshal()
	}
	if _, ok := FoldPatch(wf, MaxRecords+2); ok {
		t.Fatal("folded at the bound")
	}
	patch, ok := FoldPatch(wf, MaxRecords)
	if !ok {
		t.Fatal("not folded past the bound")
	}
	var p struct {
		Metadata struct {
			ResourceVersion string             `json:"resourceVersion"`
			Annotations     map[string]*string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		t.Fatal(err)
	}
	a := p.Metadata.Annotations
	if p.Metadata.ResourceVersion != "42" || *a[AnnotationFolded] != "5" || len(a) != 3 {
		t.Fatalf("patch %s", patch)
	}
	for _, i := range []int{0, 1} {
		if v, ok := a[AnnotationKey("wide", fmt.Sprintf("wide-%d", 1000+i))]; !ok || v != nil {
			t.Errorf("oldest record %d not removed: %s", i, patch)
		}
	}
}
