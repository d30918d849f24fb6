package repair

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"function/eventing"
	"function/internal/argoworkflow"
)

// Target names a workflow node whose pod was, or may have been, taken away. It is what every
// caller (a pod event, a sweep, the audit command) hands to Repair.
type Target struct {
	Namespace string
	Workflow  string
	NodeID    string
	PodName   string
	// PodUID is the pod incarnation the signal was about; "" when unknown.
	PodUID types.UID
	// DeletedAt is when the function first saw the pod going, on its own clock (never a time
	// the event carries: a late or forged event would start the grace early); zero when
	// unknown. The last-resort step counts its grace from it, else from the node's start.
	DeletedAt time.Time
	// Reason says why the pod went away (the DisruptionTarget condition), or UnknownReason.
	Reason  string
	Message string
	// Trigger names what asked for the repair ("pod delete event", "sweep"), for the record.
	Trigger string
	// WorkflowUID is the Workflow's UID from the pod's ownerReference ("" when unknown).
	WorkflowUID types.UID
	// FromPodEvent says an event carried this pod incarnation (Resource mode) and the caller
	// checked the scope on its labels: the repair may take its four-call path (fastComplete),
	// which goes on only when the pod is gone.
	FromPodEvent bool
	// StatusMisleading says the pod's last known status is finished (PodGC and the taint
	// manager set Failed before deleting) while its containers never ended: a controller that
	// still sees that status takes it for the step's outcome, so the task result is completed
	// only once the Workflow shows that the controller saw the pod go.
	StatusMisleading bool
	// StatusUnknown says no copy of the pod's last status came with the target (a Reference-mode
	// delete, or a sweep that found the pod gone): it may have been misleading or restartable,
	// so the task result waits for the Workflow's word as for StatusMisleading and MayRestart.
	StatusUnknown bool
	// MayRestart says the pod failed before its main container started, for a reason Argo 4's
	// failedPodRestart deletes the pod and creates it again for: whether the node failed or is
	// restarting is the controller's to say, so the task result waits for the Workflow's word.
	MayRestart bool
	// NodeName is the Node a node-wide signal named ("" for a pod's own event): only pods bound
	// to it are acted on.
	NodeName string
	// Machine is what the signal claims about the pod's machine. A pod is force-deleted only
	// when it claims MachineTerminated and the API server confirms the pod's Node is gone.
	Machine eventing.Machine
}

// String names the target in logs and errors.
func (t Target) String() string {
	return fmt.Sprintf("workflow %s/%s node %s (pod %s)", t.Namespace, t.Workflow, t.NodeID, t.PodName)
}

// NodeIDOf returns the Argo node a workflow pod runs: its node-id annotation, else the ID
// computed from its node-name annotation. ok is false for pods that run no node (the agent pod of
// HTTP/plugin templates).
func NodeIDOf(pod *corev1.Pod) (string, bool) {
	if id := pod.Annotations[argoworkflow.AnnotationNodeID]; id != "" {
		return id, true
	}
	wf := pod.Labels[argoworkflow.LabelWorkflow]
	if name := pod.Annotations[argoworkflow.AnnotationNodeName]; name != "" && wf != "" {
		return argoworkflow.NodeID(wf, name), true
	}
	return "", false
}

// TargetFromPod builds the target for a workflow pod as last seen, at time seen (the function's
// own clock).
func TargetFromPod(pod *corev1.Pod, seen time.Time, trigger string) (Target, error) {
	nodeID, ok := NodeIDOf(pod)
	if !ok {
		return Target{}, fmt.Errorf("pod %s/%s has neither %s nor %s", pod.Namespace, pod.Name, argoworkflow.AnnotationNodeID, argoworkflow.AnnotationNodeName)
	}
	t := Target{
		Namespace: pod.Namespace,
		Workflow:  pod.Labels[argoworkflow.LabelWorkflow],
		NodeID:    nodeID,
		PodName:   pod.Name,
		PodUID:    pod.UID,
		DeletedAt: seen,
		Trigger:   trigger,
	}
	t.WorkflowUID = WorkflowOwner(pod.OwnerReferences, t.Workflow)
	t.StatusMisleading = PodFinished(pod) && !ContainersEnded(pod)
	t.MayRestart = FailedBeforeStart(pod)
	t.Reason, t.Message = disruptionReason(pod)
	if w, ok := PodWarning(pod); ok {
		t.Reason, t.Message = w.Reason, withCause(w.Message, t.Reason)
	}
	return t, nil
}

// Announce makes an announced disruption (a terminated instance's message) the target's
// reason, keeping the Kubernetes-side cause in the message, as a warning recorded on the pod
// would have.
func Announce(t *Target, reason, message string) {
	t.Reason, t.Message = reason, withCause(message, t.Reason)
}

// WorkflowOwner returns the UID of the Workflow named workflow among owner references, "" when
// none is there.
func WorkflowOwner(refs []metav1.OwnerReference, workflow string) types.UID {
	for _, o := range refs {
		if o.Kind == "Workflow" && strings.HasPrefix(o.APIVersion, "argoproj.io/") && o.Name == workflow {
			return o.UID
		}
	}
	return ""
}

// withCause appends the Kubernetes-side cause (EvictionByEvictionAPI…) to an announced reason's
// message, unless it says nothing.
func withCause(message, cause string) string {
	if cause == "" || cause == UnknownReason {
		return message
	}
	if message == "" {
		return cause
	}
	return message + "; " + cause
}

// disruptionReason returns the reason and message of the pod's DisruptionTarget condition, which
// the API server or a controller adds before deleting a pod (EvictionByEvictionAPI for a
// Karpenter drain, DeletionByPodGC for a vanished Node, DeletionByTaintManager,
// TerminationByKubelet, PreemptionByScheduler); else the kubelet's eviction reason; else
// UnknownReason.
func disruptionReason(pod *corev1.Pod) (reason, message string) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return c.Reason, c.Message
		}
	}
	if pod.Status.Reason != "" {
		return pod.Status.Reason, pod.Status.Message
	}
	return UnknownReason, ""
}

// PodFinished reports whether the pod's phase is Succeeded or Failed. Its containers may still
// have been running when a controller set that phase (ContainersEnded tells).
func PodFinished(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// ContainersEnded reports whether every container of the pod has a terminated state: the pod's
// phase then tells what happened to the step, not what a controller decided about it.
func ContainersEnded(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Terminated == nil {
			return false
		}
	}
	return len(pod.Status.ContainerStatuses) > 0
}

// FailedBeforeStart reports whether the pod failed before any container but Argo's wait started,
// for a reason Argo 4's failedPodRestart restarts the node's pod for (the reasons the kubelet
// gives an infrastructure failure).
func FailedBeforeStart(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodFailed {
		return false
	}
	switch pod.Status.Reason {
	case "Evicted", "NodeShutdown", "NodeAffinity", "UnexpectedAdmissionError":
	default:
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == argoworkflow.WaitContainer {
			continue
		}
		if cs.State.Running != nil || cs.LastTerminationState.Running != nil ||
			cs.State.Terminated != nil && !cs.State.Terminated.StartedAt.IsZero() {
			return false
		}
	}
	return true
}

// WaitReported reports whether Argo's wait container exited 0. argoexec computes its exit code
// before its deferred label flip, so this is no proof that the task result was completed: a
// deletion of such a pod costs one read of the task result (the handler's check).
func WaitReported(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == argoworkflow.WaitContainer {
			return cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
		}
	}
	return false
}

// Relevant decides, from the pod as an event carried it and without any API call, whether the
// event can concern a stuck workflow: the pod is being deleted or is gone, or it finished without
// its wait container reporting. Every other pod event (the many updates of a healthy run, the
// deletion of a completed pod by Argo's pod GC) is acknowledged for free.
func Relevant(pod *corev1.Pod, deleted bool) (bool, string) {
	if _, ok := NodeIDOf(pod); !ok {
		return false, "pod runs no workflow node"
	}
	if WaitReported(pod) && !deleted {
		return false, "wait container exited 0: its task result is read when the pod is deleted"
	}
	if deleted || pod.DeletionTimestamp != nil || PodFinished(pod) {
		return true, ""
	}
	return false, "pod is neither deleted nor finished"
}

// ErrNotATarget says a pod names no workflow node the repair could take (no node ID, no
// workflow): the event carrying it is malformed.
var ErrNotATarget = errors.New("pod names no workflow node")

// PodTarget answers the one question a pod event asks of the repair: the target to repair, or
// why the pod needs nothing ("" with a target). deleted says the event is the pod's delete;
// fromEvent that pod is the event's own copy, whose incarnation the four-call path may take.
func (r *Repairer) PodTarget(ctx context.Context, pod *corev1.Pod, deleted, fromEvent bool, seen time.Time, trigger string) (Target, string, error) {
	if ok, why := Relevant(pod, deleted); !ok {
		return Target{}, why, nil
	}
	if fromEvent && forceDeleting(pod, deleted) {
		// A deletion with grace period 0 is an update and, at once, the delete: acting on the
		// update too races the API server's own removal of the pod and costs the delete more
		// calls (docs/events.md). A lost delete event is the sweep's.
		return Target{}, "force-deleted: its delete event follows", nil
	}
	t, err := TargetFromPod(pod, seen, trigger)
	if err != nil {
		return Target{}, "", fmt.Errorf("%w: %v", ErrNotATarget, err)
	}
	if WaitReported(pod) {
		// Exit 0 of wait is not proof of its label flip: read the task result.
		switch done, err := r.TaskResultComplete(ctx, t.Namespace, t.NodeID); {
		case err != nil:
			return Target{}, "", err
		case done:
			return Target{}, "wait container exited 0 and its task result is complete", nil
		}
	}
	t.FromPodEvent = fromEvent
	return t, "", nil
}

// forceDeleting reports whether an update shows a pod deleted with grace period 0, not yet
// removed (no finalizer holds it: the API server removes it right after this update).
func forceDeleting(pod *corev1.Pod, deleted bool) bool {
	g := pod.DeletionGracePeriodSeconds
	return !deleted && pod.DeletionTimestamp != nil && g != nil && *g == 0 && len(pod.Finalizers) == 0
}
