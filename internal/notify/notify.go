// Package notify tells someone what the function did: each repair record and each warning the
// function writes on a Workflow is also sent as one CloudEvent to a sink — normally the Broker
// the function's own events come from — so that a Trigger can route it to a chat or a pager
// (docs/notifications.md). The cluster objects stay the record; a notification is a copy, sent
// at most once, after the writes it reports, and its failure changes nothing of the repair.
package notify

import (
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	corev1 "k8s.io/api/core/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/repair"
)

// The CloudEvent types the function emits. No Trigger of the chart (deploy/chart) and no
// decoder of eventing/families may ever match them: a notification delivered back to the
// function would be answered 400 at best, and a loop at worst.
const (
	// TypeRepair is sent once per repaired node, when its record is written.
	TypeRepair = "dev.argo-disruption-handler.repair.v1"
	// TypeWarning is sent once per warning written on a Workflow.
	TypeWarning = "dev.argo-disruption-handler.warning.v1"
)

// Types are every CloudEvent type the function emits.
var Types = []string{TypeRepair, TypeWarning}

// SourcePrefix starts every notification's source; the function's namespace follows.
const SourcePrefix = "argo-disruption-handler/"

// ActionRecordWarning is the only action of a warning: annotations on the pod and its Workflow
// and a Kubernetes Event. No pod is deleted or evicted for a warning.
const ActionRecordWarning = "record-warning"

// The extension attributes, so that a Trigger can filter with exact attribute matches. None is
// named "kind": the karpenter-events Trigger matches every event with kind Event.
const (
	// ExtNamespace is the Workflow's namespace (route one team's workflows).
	ExtNamespace = "namespace"
	// ExtReason is Data.Reason (page for some reasons only).
	ExtReason = "reason"
	// ExtDryRun is Data.DryRun (drop dry runs before they reach a pager).
	ExtDryRun = "dryrun"
)

// Data is the JSON payload of both types (datacontenttype application/json).
type Data struct {
	// Workflow is the Workflow repaired or warned about.
	Workflow Workflow `json:"workflow"`
	// NodeID is the Argo node (the key of the Workflow's status.nodes) whose pod was taken away
	// or is about to be; "" when a warned pod carries no node ID.
	NodeID string `json:"nodeID"`
	// Pod is the name of the node's pod.
	Pod string `json:"pod"`
	// PodUID is the pod incarnation the signal named; absent when unknown (a sweep, a
	// Reference-mode event).
	PodUID string `json:"podUID,omitempty"`
	// Node is the Kubernetes Node the pod runs on; warnings only (a repair's record does not
	// keep it).
	Node string `json:"node,omitempty"`
	// Actions are the steps written, in order: the ladder's release-status-finalizer,
	// delete-orphaned-pod, complete-task-result, create-task-result, mark-node-error (README
	// "What it writes"); [] when a run only finished the record of an earlier one that wrote
	// nothing it could name; ["record-warning"] for a warning.
	Actions []string `json:"actions"`
	// Reason is why, as the record says: the pod's DisruptionTarget reason
	// (EvictionByEvictionAPI, DeletionByPodGC…), a warning's reason (SpotInterrupted,
	// DisruptionTerminating, InstanceTerminated…), NodeDeleted, or "unknown".
	Reason string `json:"reason"`
	// Message is the record's or warning's human explanation, when there is one.
	Message string `json:"message,omitempty"`
	// Signal names what made the function act: "pod delete event", "node delete event",
	// "sweep", or a warning's source and reason ("karpenter SpotInterrupted").
	Signal string `json:"signal"`
	// DryRun is true when the writes were server-side dry runs (ADH_DRY_RUN): nothing changed,
	// and the next signal about the node notifies again.
	DryRun bool `json:"dryRun"`
	// Time is the record's or warning's time (RFC 3339, UTC, seconds), also the event's time.
	Time time.Time `json:"time"`
}

// Workflow identifies a Workflow incarnation.
type Workflow struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// UID tells this Workflow from a later one of the same name.
	UID string `json:"uid"`
}

// RepairEvent is the notification of rec, a repair record written on wf. Its ID is derived from
// the Workflow's UID and the node ID, as the Kubernetes Event's name is: the same repair told
// twice (dry runs, a record folded away and written again) has the same ID, for consumers that
// deduplicate.
func RepairEvent(source string, wf *wfv1.Workflow, rec repair.Record) event.Event {
	d := Data{
		Workflow: workflowOf(wf), NodeID: rec.NodeID, Pod: rec.Pod, PodUID: rec.PodUID,
		Actions: nonNil(rec.Actions), Reason: rec.Reason, Message: rec.Message,
		Signal: rec.Trigger, DryRun: rec.DryRun, Time: rec.Time,
	}
	return newEvent(TypeRepair, source, "repair/"+workflowKey(wf)+"/"+rec.NodeID, d)
}

// WarningEvent is the notification of w, a warning written on pod and its Workflow wf; its ID
// is derived from the Workflow's UID, the pod and the reason, as the Kubernetes Event's name is.
func WarningEvent(source string, wf *wfv1.Workflow, pod *corev1.Pod, w repair.Warning, dryRun bool) event.Event {
	nodeID, _ := repair.NodeIDOf(pod)
	signal := w.Reason
	if w.Source != "" {
		signal = w.Source + " " + w.Reason
	}
	d := Data{
		Workflow: workflowOf(wf), NodeID: nodeID, Pod: pod.Name, PodUID: string(pod.UID), Node: w.Node,
		Actions: []string{ActionRecordWarning}, Reason: w.Reason, Message: w.Message,
		Signal: signal, DryRun: dryRun, Time: w.Time,
	}
	return newEvent(TypeWarning, source, "warning/"+workflowKey(wf)+"/"+pod.Name+"/"+w.Reason, d)
}

// newEvent wraps d in a CloudEvent of ceType; subject is the Workflow's namespace/name.
func newEvent(ceType, source, id string, d Data) event.Event {
	if d.Time.IsZero() {
		d.Time = time.Now()
	}
	d.Time = d.Time.UTC().Truncate(time.Second)
	e := cloudevents.NewEvent()
	e.SetID(id)
	e.SetType(ceType)
	e.SetSource(source)
	e.SetSubject(d.Workflow.Namespace + "/" + d.Workflow.Name)
	e.SetTime(d.Time)
	e.SetExtension(ExtNamespace, d.Workflow.Namespace)
	e.SetExtension(ExtReason, d.Reason)
	e.SetExtension(ExtDryRun, d.DryRun)
	_ = e.SetData(cloudevents.ApplicationJSON, d) // a struct of strings, bools and a time marshals
	return e
}

func workflowOf(wf *wfv1.Workflow) Workflow {
	return Workflow{Namespace: wf.Namespace, Name: wf.Name, UID: string(wf.UID)}
}

// workflowKey is the Workflow's UID, or its namespace/name when the UID is unknown.
func workflowKey(wf *wfv1.Workflow) string {
	if wf.UID != "" {
		return string(wf.UID)
	}
	return wf.Namespace + "/" + wf.Name
}

// nonNil keeps "actions" an array in the JSON, never null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
