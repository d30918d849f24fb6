package repair

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"function/workflowmeta"
)

// NotOurs returns why the objects read are not the chain the signal named, or "" when they are:
// the pod name is its node's (Argo's naming, either format), the Workflow is the incarnation
// that owned the pod, the pod read (when it is the named incarnation) runs that node for that
// Workflow, and the task result belongs to that Workflow. An event may be late, about an
// earlier object of the same name, or forged; a write justified by it must be about the very
// objects the API server shows now.
func NotOurs(t Target, o *Observation) string {
	if why := podNameNotNodes(t); why != "" {
		return why
	}
	wf := o.Workflow
	if wf == nil {
		return ""
	}
	if t.WorkflowUID != "" && wf.UID != t.WorkflowUID {
		return fmt.Sprintf("not ours: workflow %s/%s is another incarnation (uid %s; the pod's owner was %s)", wf.Namespace, wf.Name, wf.UID, t.WorkflowUID)
	}
	if p := o.Pod; p != nil && (t.PodUID == "" || p.UID == t.PodUID) {
		if id, _ := NodeIDOf(p); id != t.NodeID {
			return fmt.Sprintf("not ours: pod %s/%s runs node %q, not %q", p.Namespace, p.Name, id, t.NodeID)
		}
		if !ownedBy(p.OwnerReferences, wf.UID) {
			return fmt.Sprintf("not ours: pod %s/%s is not owned by workflow %s (uid %s)", p.Namespace, p.Name, wf.Name, wf.UID)
		}
	}
	if tr := o.TaskResult; tr != nil && (tr.Labels[workflowmeta.LabelWorkflow] != wf.Name || !ownedBy(tr.OwnerReferences, wf.UID)) {
		return fmt.Sprintf("not ours: task result %s/%s belongs to another workflow than %s (uid %s)", tr.Namespace, tr.Name, wf.Name, wf.UID)
	}
	if o.Nodes != nil {
		if _, ok := o.Nodes[t.NodeID]; !ok {
			if _, waits := wf.Status.TaskResultsCompletionStatus[t.NodeID]; !waits {
				return fmt.Sprintf("not ours: workflow %s/%s has no node %s", wf.Namespace, wf.Name, t.NodeID)
			}
		}
	}
	return ""
}

// podNameNotNodes returns why the target's pod name cannot be its node's pod, or "".
func podNameNotNodes(t Target) string {
	if t.PodName == "" || workflowmeta.PodNameMatchesNode(t.PodName, t.Workflow, t.NodeID) {
		return ""
	}
	return fmt.Sprintf("not ours: pod name %s/%s is not a name Argo gives node %s", t.Namespace, t.PodName, t.NodeID)
}

// ownedBy reports whether the owner references name a Workflow of that UID.
func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.Kind == "Workflow" && r.UID == uid {
			return true
		}
	}
	return false
}
