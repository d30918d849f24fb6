package repair

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/handlers/nodestatus"
	"function/handlers/record"
	"function/handlers/scope"
	"function/workflowmeta"
)

// Action is one step of the repair ladder (../shared/design/argo-controller.md).
type Action string

// The ladder, in the order the steps run.
const (
	// ReleaseStatusFinalizer removes workflows.argoproj.io/status from a pod on a Node that no
	// longer exists (stuck Terminating, or about to be), so the pod can go (ladder step 3).
	ReleaseStatusFinalizer Action = "release-status-finalizer"
	// CompleteTaskResult labels the node's WorkflowTaskResult report-outputs-completed=true; the
	// controller then does everything else itself (ladder step 1).
	CompleteTaskResult Action = "complete-task-result"
	// CreateTaskResult creates the missing task result, already complete, when the workflow's
	// gate still waits on it (ladder step 2).
	CreateTaskResult Action = "create-task-result"
	// DeleteOrphanedPod force-deletes a pod whose machine is terminated, as PodGC does after its
	// 40 s quarantine: the controller then marks the node at once, and the task result can be
	// completed in the same pass (no status left for the controller to misread).
	DeleteOrphanedPod Action = "delete-orphaned-pod"
	// MarkNodeError sets an inline Pod node still Running with no pod to Error "pod deleted"
	// (ladder step 4, last resort).
	MarkNodeError Action = "mark-node-error"
)

// Observation is what the cluster looked like for one target, read in one pass.
type Observation struct {
	// Workflow is nil when it does not exist.
	Workflow *wfv1.Workflow
	// Nodes are the workflow's nodes wherever stored (nil when offloaded or unreadable).
	Nodes   wfv1.Nodes
	Storage nodestatus.Storage
	// Pod is the pod now under the target's name, nil when gone. It may be a new incarnation.
	Pod *corev1.Pod
	// HostGone is true when the pod's Node object was read and does not exist.
	HostGone bool
	// TaskResult is the node's WorkflowTaskResult, nil when missing.
	TaskResult *wfv1.WorkflowTaskResult
}

// Plan is what to do for one target.
type Plan struct {
	Actions []Action
	// Record is set when the workflow lacks the record of a repair (done now, or done by an
	// earlier delivery that stopped before recording).
	Record bool
	// Skip says why nothing is written, when Actions is empty and Record is false.
	Skip string
	// Note explains a decision not to act yet (e.g. the last-resort grace has not elapsed).
	Note string
}

// Empty reports whether the plan writes nothing.
func (p Plan) Empty() bool { return len(p.Actions) == 0 && !p.Record }

// Policy are the settings the decision depends on.
type Policy struct {
	Scope scope.Scope
	// NodeErrorGrace is how long an inline Pod node may stay Running with no pod before
	// MarkNodeError.
	NodeErrorGrace time.Duration
}

// WorkflowSkip returns why a workflow must not be touched at all, or "" when it may be.
// Checked first so that a finished or foreign workflow costs one read.
func WorkflowSkip(wf *wfv1.Workflow, s scope.Scope) string {
	switch {
	case wf == nil:
		return "workflow not found"
	case wf.DeletionTimestamp != nil:
		return "workflow is being deleted"
	case wf.Status.Phase.Completed():
		return fmt.Sprintf("workflow already %s", wf.Status.Phase)
	}
	if err := s.Check(wf.Namespace, wf.Labels); err != nil {
		return err.Error()
	}
	return ""
}

// podCanReport reports whether the pod now under the target's name may still run its wait
// container and write its task result: it exists, has not finished, is bound, and its Node
// exists. Completing the task result under such a pod would let the workflow finish without its
// outputs.
func podCanReport(o *Observation) bool {
	p := o.Pod
	return p != nil && !Terminal(p) && p.Spec.NodeName != "" && !o.HostGone
}

// goneOnRelease reports whether releasing the status finalizer deletes the pod at once: it is
// already force-deleted (grace 0, as PodGC and Karpenter's deadline do) and holds no other
// finalizer.
func goneOnRelease(p *corev1.Pod) bool {
	g := p.DeletionGracePeriodSeconds
	return p.DeletionTimestamp != nil && g != nil && *g == 0 && !otherFinalizers(p)
}

// otherFinalizers reports whether the pod holds a finalizer other than Argo's status one: deleting
// it would then leave the object (and its misleading status) in place.
func otherFinalizers(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Finalizers, func(f string) bool { return f != workflowmeta.FinalizerStatus })
}

// Decide computes the plan for target t from observation o at time now. It is pure: the same
// inputs give the same plan, which is what makes every step safe to re-run.
func Decide(t Target, o *Observation, pol Policy, now time.Time) Plan {
	if why := WorkflowSkip(o.Workflow, pol.Scope); why != "" {
		if lateRecord(t, o, pol.Scope) {
			return Plan{Record: true, Note: "workflow already finished: the disruption is recorded only"}
		}
		return Plan{Skip: why}
	}
	if repairedBefore(o.Workflow, t) {
		return Plan{Skip: "already repaired: the workflow records this pod's repair"}
	}
	if podCanReport(o) {
		if o.Pod.DeletionTimestamp != nil {
			return Plan{Skip: "pod is terminating on a live node: its wait container may still report"}
		}
		return Plan{Skip: "pod is running"}
	}
	var p Plan
	podStays := o.Pod != nil
	if o.Pod != nil && o.HostGone {
		// On a gone host the status finalizer guards nothing: the pod's status will never change
		// again. Released before PodGC deletes the pod (or after, when it is stuck Terminating), it
		// lets the pod go at once, which is when the controller marks the node.
		held := slices.Contains(o.Pod.Finalizers, workflowmeta.FinalizerStatus)
		if held {
			p.Actions = append(p.Actions, ReleaseStatusFinalizer)
		}
		switch {
		case held && goneOnRelease(o.Pod):
			podStays = false
		case t.MachineGone && !otherFinalizers(o.Pod) && !(Terminal(o.Pod) && ContainersEnded(o.Pod)):
			// The machine is terminated: nothing of the pod runs or will report, and waiting for
			// PodGC (40 s quarantine, then Failed, then deletion) keeps the workflow Running for
			// a minute or more. A pod whose containers all ended needs no deletion: its status
			// is true.
			p.Actions = append(p.Actions, DeleteOrphanedPod)
			podStays = false
		}
	}
	if podStays && !(Terminal(o.Pod) && ContainersEnded(o.Pod)) {
		// The pod object remains with a status that is not the step's outcome: Running on a gone
		// host, or set Failed by PodGC (or the taint manager) before it deletes the pod, without
		// the containers ending. Completing the task result while such a pod exists lets the
		// controller infer the node's phase from that status — Argo 3.6.10 then marks the node
		// Succeeded ("phase was Failed but main did not have terminated state"), seen on the real
		// controller. Complete it once the pod is gone (its delete event, or the next signal).
		if len(p.Actions) > 0 {
			p.Note = "task result completed once the pod is gone"
			p.Record = !record.HasRecord(o.Workflow, t.NodeID)
			return p
		}
		if o.HostGone {
			return Plan{Skip: "pod still present on a gone node: waiting for its deletion"}
		}
		return Plan{Skip: "pod marked Failed without its containers ending: waiting for its deletion"}
	}
	wf, tr := o.Workflow, o.TaskResult
	holds := nodestatus.GateHolds(wf, o.Nodes, t.NodeID)
	switch {
	case tr != nil && tr.Labels[workflowmeta.LabelReportOutputsCompleted] == "false":
		p.Actions = append(p.Actions, CompleteTaskResult)
	case tr != nil && tr.Labels[workflowmeta.LabelReportOutputsCompleted] != "true" && holds:
		// No label at all: the controller's taskResultReconciliation ignores the object, so
		// the map entry would stay false for ever.
		p.Actions = append(p.Actions, CompleteTaskResult)
	case tr == nil && holds:
		p.Actions = append(p.Actions, CreateTaskResult)
	}
	if act, note := lastResort(t, o, pol, now); act {
		p.Actions = append(p.Actions, MarkNodeError)
	} else {
		p.Note = note
	}
	switch {
	case len(p.Actions) > 0:
		p.Record = !record.HasRecord(wf, t.NodeID)
	case tr != nil && (tr.Labels[workflowmeta.LabelRepaired] != "" || tr.Annotations[workflowmeta.AnnotationRepaired] != "") && !record.HasRecord(wf, t.NodeID):
		// An earlier delivery repaired the task result and stopped before recording.
		p.Record = true
	default:
		p.Skip = "nothing to repair: the task result is complete or not awaited"
	}
	return p
}

// lateRecordCandidate reports whether a finished workflow may still lack the record of this
// pod's disruption: a repair that completed the task result lets the controller finish the
// workflow (and delete its task results) within a reconcile, so a delivery that failed after the
// repair write (its Event POST, say) finds the workflow finished when it comes back.
func lateRecordCandidate(wf *wfv1.Workflow, t Target, s scope.Scope) bool {
	return wf != nil && wf.DeletionTimestamp == nil && wf.Status.Phase.Completed() && t.PodUID != "" &&
		s.Check(wf.Namespace, wf.Labels) == nil && !record.HasRecord(wf, t.NodeID)
}

// lateRecord decides the record-only plan for such a workflow: the node this pod ran ended the
// way the controller ends a node whose pod vanished (Error or Failed, "pod deleted"), so the why
// of it belongs on the workflow even though nothing is left to repair.
func lateRecord(t Target, o *Observation, s scope.Scope) bool {
	if !lateRecordCandidate(o.Workflow, t, s) {
		return false
	}
	n, ok := o.Nodes[t.NodeID]
	return ok && n.Type == wfv1.NodeTypePod && (n.Phase == wfv1.NodeError || n.Phase == wfv1.NodeFailed) &&
		strings.HasPrefix(n.Message, PodDeletedMessage)
}

// lastResort decides ladder step 4. Only inline nodes are ever written; only a Pod node still
// Running with no pod at all, once the controller had NodeErrorGrace to mark it itself (its
// podReconciliation does so within a requeue on every version). A Pending node is left alone:
// the controller re-creates its pod.
func lastResort(t Target, o *Observation, pol Policy, now time.Time) (bool, string) {
	if o.Pod != nil || o.Storage != nodestatus.Inline {
		return false, ""
	}
	n, ok := o.Nodes[t.NodeID]
	if !ok || n.Type != wfv1.NodeTypePod || n.Phase != wfv1.NodeRunning || n.IsDaemoned() {
		return false, ""
	}
	since := t.DeletedAt
	if since.IsZero() {
		since = n.StartedAt.Time
	}
	if wait := since.Add(pol.NodeErrorGrace).Sub(now); wait > 0 {
		return false, fmt.Sprintf("node still Running with no pod; the controller should mark it Error (last resort in %s)", wait.Round(time.Second))
	}
	return true, ""
}
