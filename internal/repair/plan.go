package repair

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/config"
	"function/eventing"
	"function/internal/argoworkflow"
)

// Action is one step of the repair ladder (the README's "What it writes").
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
	Storage argoworkflow.Storage
	// Pod is the pod now under the target's name, nil when gone. It may be a new incarnation.
	Pod *corev1.Pod
	// NodePods are the live pods of the Workflow that run the target's node, listed only when
	// the Workflow cannot name the node's pod (NodePodName): the cluster's word on which pod
	// the node has.
	NodePods []corev1.Pod
	// HostGone is true when the pod's Node was read and does not exist: the API server's word
	// that nothing on it can report any more.
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
	// NotOurs says the objects read are not the chain the signal named (another incarnation of
	// the pod, Workflow or task result, or a pod name that is not its node's): nothing is
	// written, not even a record.
	NotOurs bool
	// Await says the task result waits for the controller to see the pod go.
	Await bool
	// Note explains a decision not to act yet (e.g. the last-resort grace has not elapsed).
	Note string
}

// Empty reports whether the plan writes nothing.
func (p Plan) Empty() bool { return len(p.Actions) == 0 && !p.Record }

// Policy are the settings the decision depends on.
type Policy struct {
	Scope config.Scope
	// NodeErrorGrace is how long an inline Pod node may stay Running with no pod before
	// MarkNodeError.
	NodeErrorGrace time.Duration
}

// WorkflowSkip returns why a workflow must not be touched at all, or "" when it may be.
// Checked first so that a finished or foreign workflow costs one read.
func WorkflowSkip(wf *wfv1.Workflow, s config.Scope) string {
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
// container and write its task result: it exists, has not finished, and its Node was not found
// gone. An unscheduled pod counts: it will run. Completing the task result under such a pod
// would let the workflow finish without its outputs.
func podCanReport(o *Observation) bool {
	p := o.Pod
	return p != nil && !PodFinished(p) && !o.HostGone
}

// statusIsOutcome reports whether the pod's status tells what happened to the step: it
// finished and every container ended. Any other status left behind (Running on a gone host,
// Failed set by PodGC over running containers) is not the step's outcome.
func statusIsOutcome(p *corev1.Pod) bool { return PodFinished(p) && ContainersEnded(p) }

// otherFinalizers reports whether the pod holds a finalizer other than Argo's status one: deleting
// it would then leave the object (and its misleading status) in place.
func otherFinalizers(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Finalizers, func(f string) bool { return f != argoworkflow.FinalizerStatus })
}

// Decide computes the plan for target t from observation o at time now. It is pure: the same
// inputs give the same plan, which is what makes every step safe to re-run. The order is the
// order of doubt: whose objects these are, whether the workflow may be touched, what the pod
// still does, and only then the task result.
func Decide(t Target, o *Observation, pol Policy, now time.Time) Plan {
	if why := NotOurs(t, o); why != "" {
		return Plan{Skip: why, NotOurs: true}
	}
	if why := WorkflowSkip(o.Workflow, pol.Scope); why != "" {
		if lateRecord(t, o, pol.Scope) {
			return Plan{Record: true, Note: "workflow already finished: the disruption is recorded only"}
		}
		return Plan{Skip: why}
	}
	if repairedBefore(o.Workflow, t) {
		return Plan{Skip: "already repaired: the workflow records this pod's repair"}
	}
	var p Plan
	if o.Pod != nil {
		var final bool
		if p, final = decidePod(t, o, pol, now); final {
			p.Record = len(p.Actions) > 0 && !HasRecord(o.Workflow, t.NodeID)
			return p
		}
	}
	if why := awaitController(t, o); why != "" {
		if act, _ := lastResort(t, o, pol, now); act {
			// The controller never marked the node: marking it is what lets the gate open on
			// the next pass, with the Workflow's word.
			return Plan{Actions: []Action{MarkNodeError}, Record: !HasRecord(o.Workflow, t.NodeID), Note: why}
		}
		return Plan{Skip: why, Await: true}
	}
	return decideTaskResult(t, o, pol, now, p)
}

// decidePod decides what the pod under the target's name needs. final is true when the run
// ends there: the pod may still report, is another incarnation, or is removed by this run.
// Otherwise the pod's status is the step's outcome and the task result is decided next, after
// the actions in p.
func decidePod(t Target, o *Observation, pol Policy, now time.Time) (p Plan, final bool) {
	pod := o.Pod
	switch {
	case t.PodUID != "" && pod.UID != t.PodUID:
		return Plan{Skip: fmt.Sprintf("pod re-created under the same name (uid %s, the signal named %s): the new incarnation reports for itself", pod.UID, t.PodUID)}, true
	case t.NodeName != "" && pod.Spec.NodeName != t.NodeName:
		return Plan{Skip: fmt.Sprintf("pod is bound to node %q, not to %q the signal named", pod.Spec.NodeName, t.NodeName)}, true
	case podCanReport(o) && pod.DeletionTimestamp != nil:
		return Plan{Skip: "pod is terminating on a live node: its wait container may still report"}, true
	case podCanReport(o):
		return Plan{Skip: "pod is running"}, true
	}
	held := slices.Contains(pod.Finalizers, argoworkflow.FinalizerStatus)
	if statusIsOutcome(pod) {
		if held && o.HostGone {
			// On a gone host the finalizer guards nothing; the pod's status is true, so the task
			// result may follow in the same run.
			p.Actions = append(p.Actions, ReleaseStatusFinalizer)
		}
		return p, false
	}
	if !o.HostGone {
		return Plan{Skip: "pod marked Failed without its containers ending: waiting for its deletion"}, true
	}
	return decideOrphan(t, o, pol, now, held)
}

// decideOrphan decides for a pod whose status is not the step's outcome and whose Node is gone:
// nothing of it will report. Released, the status finalizer no longer holds its deletion; a
// machine claimed terminated (and its Node confirmed gone) lets the pod be deleted at once, as
// PodGC does after its quarantine.
func decideOrphan(t Target, o *Observation, pol Policy, now time.Time, held bool) (p Plan, final bool) {
	pod := o.Pod
	deleting := t.Machine == eventing.MachineTerminated && !otherFinalizers(pod)
	if deleting && !PodFinished(pod) {
		// Left Running by its terminated machine: that status reads as running, never as a
		// success, so the gate opens first — before the controller sees the pod go, which on
		// Argo 3.7 would re-create it and run the step again regardless of its retryStrategy. A
		// deletion that fails undoes the completion (apply).
		p = decideTaskResult(t, o, pol, now, Plan{})
		p.Actions = slices.DeleteFunc(p.Actions, func(a Action) bool { return a == MarkNodeError })
		p.Skip, p.Note = "", ""
	}
	if held && (t.Machine == eventing.MachineTerminated || pod.DeletionTimestamp != nil) {
		// Released only when it holds a deletion: on a pod not yet being deleted it guards the
		// controller's read of the status PodGC will set, and an early release lets the pod
		// vanish unread (Argo 3.7 then runs the step again).
		p.Actions = append(p.Actions, ReleaseStatusFinalizer)
	}
	if deleting {
		p.Actions = append(p.Actions, DeleteOrphanedPod)
	}
	if len(p.Actions) == 0 {
		return Plan{Skip: "pod still present on a gone node: waiting for its deletion"}, true
	}
	if !slices.Contains(p.Actions, CompleteTaskResult) && !slices.Contains(p.Actions, CreateTaskResult) {
		// Its last status (Failed over running containers) could be read as success: completed
		// in this run, the gate could open while the controller still reads it.
		p.Note = "task result completed once the controller has seen the pod go"
	}
	return p, true
}

// awaitController returns why a gone pod's task result must wait, or "". When the pod's last
// status was misleading (Failed over running containers), the gate opens only once the Workflow
// shows that the controller saw the pod go: its node Error or Failed. Opened earlier, a
// controller whose pod informer lags would still read that status, and Argo 3.6 and 3.7 then
// mark the node Succeeded.
//
// A pod that failed before its main container started (MayRestart, or seen so now) waits the
// same way: Argo 4's failedPodRestart sets its node Pending and creates the pod again, whose
// executor would find its task result already complete; only a node the controller marked
// Error or Failed has no restart coming.
func awaitController(t Target, o *Observation) string {
	mayRestart := t.MayRestart || o.Pod != nil && FailedBeforeStart(o.Pod)
	unknown := t.StatusUnknown && o.Pod == nil
	if !t.StatusMisleading && !mayRestart && !unknown {
		return ""
	}
	why := "the pod's last status was finished over running containers"
	switch {
	case mayRestart:
		why = "the pod failed before its main container started: the controller may restart it"
	case unknown && !t.StatusMisleading:
		why = "the pod's last status is unknown (only its name was seen)"
	}
	n, ok := o.Nodes[t.NodeID]
	switch {
	case o.Nodes == nil:
		return why + "; the nodes are offloaded: left to the controller and the sweep"
	case !ok:
		return why + "; its node is not in the workflow"
	case n.Phase == wfv1.NodeError || n.Phase == wfv1.NodeFailed:
		return ""
	case n.Phase == wfv1.NodeSucceeded && unknown && !t.StatusMisleading && !mayRestart:
		return "" // the controller judged the pod already: nothing is left for it to misread
	case n.Phase == wfv1.NodeSucceeded:
		return "node marked Succeeded while its pod's status was not the step's outcome: left to the controller"
	}
	return fmt.Sprintf("waiting for the controller to see the pod go (node %s; %s)", n.Phase, why)
}

// decideTaskResult decides ladder steps 1, 2 and 4 once no pod can report any more; p holds the
// pod's actions already decided.
func decideTaskResult(t Target, o *Observation, pol Policy, now time.Time, p Plan) Plan {
	wf, tr := o.Workflow, o.TaskResult
	holds := argoworkflow.GateHolds(wf, o.Nodes, t.NodeID)
	switch {
	case tr != nil && tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "false":
		p.Actions = append(p.Actions, CompleteTaskResult)
	case tr != nil && tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" && holds:
		// No label at all: the controller's taskResultReconciliation ignores the object, so
		// the map entry would stay false for ever.
		p.Actions = append(p.Actions, CompleteTaskResult)
	case tr == nil && holds && controllerSawPodGo(o, t.NodeID):
		p.Actions = append(p.Actions, CreateTaskResult)
	}
	if act, note := lastResort(t, o, pol, now); act {
		p.Actions = append(p.Actions, MarkNodeError)
	} else if note != "" {
		p.Note = note
	}
	switch {
	case len(p.Actions) > 0:
		p.Record = !HasRecord(wf, t.NodeID)
	case tr != nil && (tr.Labels[argoworkflow.LabelRepaired] != "" || tr.Annotations[argoworkflow.AnnotationRepaired] != "") && !HasRecord(wf, t.NodeID):
		// An earlier delivery repaired the task result and stopped before recording.
		p.Record = true
	default:
		p.Skip = "nothing to repair: the task result is complete or not awaited"
	}
	return p
}

// controllerSawPodGo reports whether the workflow shows the node finished, or (compressed or
// offloaded nodes aside) whether it cannot be read. A task result is created, never merely
// completed, for a node whose wait container never made one: the node must be past running, or
// the object would stand in for an executor that may yet start.
func controllerSawPodGo(o *Observation, nodeID string) bool {
	if o.Nodes == nil {
		return o.Storage != argoworkflow.Inline
	}
	n, ok := o.Nodes[nodeID]
	return ok && PhaseFulfilled(n.Phase)
}

// PhaseFulfilled reports whether a node phase is final. NodeStatus.Fulfilled is not used: from
// Argo 3.7.1 it is false while taskResultSynced is false, which is exactly when the gate holds.
func PhaseFulfilled(p wfv1.NodePhase) bool {
	switch p {
	case wfv1.NodeSucceeded, wfv1.NodeFailed, wfv1.NodeError, wfv1.NodeSkipped, wfv1.NodeOmitted:
		return true
	}
	return false
}

// lateRecordCandidate reports whether a finished workflow may still lack the record of this
// pod's disruption: a repair that completed the task result lets the controller finish the
// workflow (and delete its task results) within a reconcile, so a delivery that failed after the
// repair write (its Event POST, say) finds the workflow finished when it comes back.
func lateRecordCandidate(wf *wfv1.Workflow, t Target, s config.Scope) bool {
	return wf != nil && wf.DeletionTimestamp == nil && wf.Status.Phase.Completed() && t.PodUID != "" &&
		s.Check(wf.Namespace, wf.Labels) == nil && !HasRecord(wf, t.NodeID)
}

// lateRecord decides the record-only plan for such a workflow: the node this pod ran ended the
// way the controller ends a node whose pod vanished (Error or Failed, "pod deleted"), so the why
// of it belongs on the workflow even though nothing is left to repair.
func lateRecord(t Target, o *Observation, s config.Scope) bool {
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
	if o.Pod != nil || o.Storage != argoworkflow.Inline {
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
