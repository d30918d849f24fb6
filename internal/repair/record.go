// The record: why a workflow was repaired, written where users look: an annotation on the
// Workflow and a Kubernetes Event on it. Not in the node message: users' retry expressions match
// "pod deleted" there.

package repair

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
)

// MaxRecords bounds what a Workflow carries of ours: the warnings annotation keeps the newest
// MaxRecords warnings, and beyond MaxRecords repair records the oldest are folded into a count
// (FoldPatch), so a workflow that loses hundreds of pods stays far from Argo's size limit and the
// API server's 256 KiB annotation limit.
const MaxRecords = 20

// AnnotationFolded counts the repair records folded away from a Workflow.
const AnnotationFolded = "argo-disruption-handler.dev/disruptions-folded"

// FoldPatch returns the merge patch that folds the oldest repair records of wf beyond keep into
// the AnnotationFolded count, preconditioned on wf's resourceVersion; ok is false when there are
// no more than keep.
func FoldPatch(wf *wfv1.Workflow, keep int) (patch []byte, ok bool) {
	type rec struct {
		key string
		at  time.Time
	}
	var recs []rec
	for k, v := range wf.Annotations {
		if !strings.HasPrefix(k, argoworkflow.AnnotationDisruptionPrefix) {
			continue
		}
		r, _ := Parse(v) // a damaged record has a zero time: folded first
		recs = append(recs, rec{k, r.Time})
	}
	if len(recs) <= keep {
		return nil, false
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].at.Before(recs[j].at) })
	folded := 0
	fmt.Sscan(wf.Annotations[AnnotationFolded], &folded)
	drop := recs[:len(recs)-keep]
	ann := map[string]any{AnnotationFolded: fmt.Sprint(folded + len(drop))}
	for _, r := range drop {
		ann[r.key] = nil
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": wf.ResourceVersion, "annotations": ann}})
	return b, true
}

// EventReason is the Kubernetes Event reason on the Workflow.
const EventReason = "PodDisrupted"

// UnknownReason is recorded when nothing tells why the pod went away.
const UnknownReason = "unknown"

// Record is one repaired disruption of one node.
type Record struct {
	Pod     string    `json:"pod"`
	PodUID  string    `json:"podUID,omitempty"`
	NodeID  string    `json:"nodeID"`
	Reason  string    `json:"reason"`
	Message string    `json:"message,omitempty"`
	Actions []string  `json:"actions"`
	Trigger string    `json:"trigger,omitempty"`
	Time    time.Time `json:"time"`
	DryRun  bool      `json:"dryRun,omitempty"`
}

// Marshal returns the record as one JSON line (the AnnotationRepaired value).
func (r Record) Marshal() string {
	b, _ := json.Marshal(r) // a struct of strings, bools and a time cannot fail to marshal
	return string(b)
}

// Parse reads a record written by Marshal.
func Parse(s string) (Record, error) {
	var r Record
	err := json.Unmarshal([]byte(s), &r)
	return r, err
}

// Recorded returns the records on a workflow, keyed by node ID. A damaged annotation (edited by
// hand) is skipped rather than blocking repairs: it is rewritten on the next record of its node.
func Recorded(wf *wfv1.Workflow) map[string]Record {
	out := map[string]Record{}
	for k, v := range wf.Annotations {
		if !strings.HasPrefix(k, argoworkflow.AnnotationDisruptionPrefix) {
			continue
		}
		if r, err := Parse(v); err == nil && r.NodeID != "" {
			out[r.NodeID] = r
		}
	}
	return out
}

// HasRecord reports whether the workflow already records a repair of nodeID.
func HasRecord(wf *wfv1.Workflow, nodeID string) bool {
	r, err := Parse(wf.Annotations[AnnotationKey(wf.Name, nodeID)])
	return err == nil && r.NodeID == nodeID
}

// AnnotationKey is the Workflow annotation holding the record of one node:
// argo-disruption-handler.dev/disruption.<the node ID's hash suffix>. One key per node lets a
// record be written with a merge patch of that key alone — no read of the other records, no
// resourceVersion race with the controller, which updates the workflow right after our task
// result write.
func AnnotationKey(workflow, nodeID string) string {
	if nodeID == workflow {
		return argoworkflow.AnnotationDisruptionPrefix + "root"
	}
	if rest, ok := strings.CutPrefix(nodeID, workflow+"-"); ok && rest != "" && len(rest) <= 20 && strings.Trim(rest, "0123456789") == "" {
		return argoworkflow.AnnotationDisruptionPrefix + rest
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(nodeID))
	return fmt.Sprintf("%sx%016x", argoworkflow.AnnotationDisruptionPrefix, h.Sum64())
}

// keepNewest drops the oldest entries of m beyond MaxRecords, so an annotation does not grow
// without bound on a workflow that loses hundreds of pods.
func keepNewest[T any](m map[string]T, at func(T) time.Time) {
	if len(m) <= MaxRecords {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return at(m[keys[i]]).After(at(m[keys[j]])) })
	for _, k := range keys[MaxRecords:] {
		delete(m, k)
	}
}

// Event returns the Kubernetes Event for rec on wf. Its name is derived from the workflow UID and
// node ID, so a re-delivered event creating it again gets AlreadyExists: exactly one Event per
// repaired node, however often the signal arrives.
func Event(wf *wfv1.Workflow, rec Record, host string) *corev1.Event {
	msg := fmt.Sprintf("pod %s (node %s) was taken away: %s", rec.Pod, rec.NodeID, rec.Reason)
	if rec.Message != "" {
		msg += " (" + rec.Message + ")"
	}
	msg += fmt.Sprintf("; %v", rec.Actions)
	if rec.DryRun {
		msg += " [dry run]"
	}
	return workflowEvent(wf, rec.NodeID, EventReason, "Repair", msg, rec.Time, host)
}

// workflowEvent builds a Warning Event on wf whose name is derived from the workflow UID and key.
func workflowEvent(wf *wfv1.Workflow, key, reason, action, msg string, at time.Time, host string) *corev1.Event {
	h := fnv.New64a()
	_, _ = h.Write([]byte(string(wf.UID) + "/" + key))
	name := wf.Name
	if len(name) > 200 {
		name = name[:200]
	}
	now := metav1.NewTime(at)
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%016x", name, h.Sum64()),
			Namespace: wf.Namespace,
			Labels:    map[string]string{argoworkflow.LabelWorkflow: wf.Name},
		},
		InvolvedObject: corev1.ObjectReference{
			APIVersion:      wfv1.SchemeGroupVersion.String(),
			Kind:            "Workflow",
			Namespace:       wf.Namespace,
			Name:            wf.Name,
			UID:             wf.UID,
			ResourceVersion: wf.ResourceVersion,
		},
		Reason:              reason,
		Message:             msg,
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: argoworkflow.Component},
		ReportingController: argoworkflow.Domain + "/" + argoworkflow.Component,
		ReportingInstance:   host,
		Action:              action,
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
	}
}
