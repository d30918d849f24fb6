package repair

import (
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
)

// WarningEventReason is the Kubernetes Event reason for an announced disruption.
const WarningEventReason = "DisruptionWarning"

// Warning is a disruption announced for a pod before (or while) it goes away: a Karpenter Event,
// an EC2 interruption message. Written on the pod and its Workflow, it is read back by the repair
// so the record says "SpotInterrupted" rather than "unknown" — the state lives on the cluster
// objects, not in the function's memory.
type Warning struct {
	Source  string    `json:"source"`
	Reason  string    `json:"reason"`
	Message string    `json:"message,omitempty"`
	Node    string    `json:"node,omitempty"`
	Time    time.Time `json:"time"`
}

// Marshal returns the warning as one JSON line (the pod annotation value).
func (w Warning) Marshal() string {
	b, _ := json.Marshal(w)
	return string(b)
}

// PodWarning returns the warning recorded on a pod, if any.
func PodWarning(pod *corev1.Pod) (Warning, bool) {
	var w Warning
	s, ok := pod.Annotations[argoworkflow.AnnotationWarning]
	if !ok || json.Unmarshal([]byte(s), &w) != nil || w.Reason == "" {
		return Warning{}, false
	}
	return w, true
}

// Warnings returns the warnings recorded on a workflow, keyed by pod name.
func Warnings(wf *wfv1.Workflow) map[string]Warning {
	out := map[string]Warning{}
	if s, ok := wf.Annotations[argoworkflow.AnnotationWarnings]; ok {
		_ = json.Unmarshal([]byte(s), &out)
	}
	return out
}

// WarningsWith returns the workflow's warnings annotation with w recorded for pod, keeping the
// MaxRecords newest.
func WarningsWith(wf *wfv1.Workflow, pod string, w Warning) string {
	all := Warnings(wf)
	all[pod] = w
	keepNewest(all, func(w Warning) time.Time { return w.Time })
	b, _ := json.Marshal(all)
	return string(b)
}

// WarningEvent returns the Kubernetes Event for w on wf about pod; its name is derived from the
// workflow UID, pod and reason, so the same warning delivered again creates nothing new.
func WarningEvent(wf *wfv1.Workflow, pod string, w Warning, host string) *corev1.Event {
	msg := fmt.Sprintf("pod %s may be taken away: %s", pod, w.Reason)
	if w.Message != "" {
		msg += " (" + w.Message + ")"
	}
	if w.Node != "" {
		msg += " on node " + w.Node
	}
	return workflowEvent(wf, pod+"/"+w.Reason, WarningEventReason, "Record", msg, w.Time, host)
}
