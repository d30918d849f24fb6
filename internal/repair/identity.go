package repair

import (
	"fmt"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"function/internal/argoworkflow"
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
	if why := notNodesPod(t, o); why != "" {
		return why
	}
	if p := o.Pod; p != nil && (t.PodUID == "" || p.UID == t.PodUID) {
		if id, _ := NodeIDOf(p); id != t.NodeID {
			return fmt.Sprintf("not ours: pod %s/%s runs node %q, not %q", p.Namespace, p.Name, id, t.NodeID)
		}
		if !ownedBy(p.OwnerReferences, wf.UID) {
			return fmt.Sprintf("not ours: pod %s/%s is not owned by workflow %s (uid %s)", p.Namespace, p.Name, wf.Name, wf.UID)
		}
	}
	if tr := o.TaskResult; tr != nil && (tr.Labels[argoworkflow.LabelWorkflow] != wf.Name || !ownedBy(tr.OwnerReferences, wf.UID)) {
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

// NodePodName returns the name the controller gives the node's pod now, computed as Argo does
// (GeneratePodName with the Workflow's pod-name format and the node's template, the way its
// operator finds a node's pod). known is false when the Workflow does not say: no pod-name
// format yet (the controller's own default would decide), or a v2 name whose node status is not
// readable (offloaded or compressed beyond reading).
func NodePodName(wf *wfv1.Workflow, nodes wfv1.Nodes, nodeID string) (name string, known bool) {
	switch wf.Annotations[argoworkflow.AnnotationPodNameFormat] {
	case "v1":
		return nodeID, true
	case "v2":
	default:
		return "", false
	}
	n, ok := nodes[nodeID]
	if !ok {
		return "", false
	}
	return argoworkflow.PodName(wf.Name, n.Name, templateOf(&n), nodeID, "v2"), true
}

// templateOf is Argo's GetTemplateFromNode: the node's templateRef template, else its template
// name.
func templateOf(n *wfv1.NodeStatus) string {
	if n.TemplateRef != nil {
		return n.TemplateRef.Template
	}
	return n.TemplateName
}

// notNodesPod returns why the target's pod name is not the node's pod as the cluster shows it,
// or "". A 404 for a name proves only that this name has no pod; it says the node's pod is gone
// only when the name is the one the controller gives that node. When the Workflow cannot say
// (see NodePodName), the pods of the Workflow that carry the node's ID were listed instead
// (Observation.NodePods): any other live pod of that node makes the target not ours.
func notNodesPod(t Target, o *Observation) string {
	if want, known := NodePodName(o.Workflow, o.Nodes, t.NodeID); known {
		if t.PodName != want {
			return fmt.Sprintf("not ours: pod %s/%s is not the pod Argo gives node %s now (%s)", t.Namespace, t.PodName, t.NodeID, want)
		}
		return ""
	}
	for _, p := range o.NodePods {
		if p.Name != t.PodName {
			return fmt.Sprintf("not ours: node %s of workflow %s/%s has pod %s, not %s", t.NodeID, t.Namespace, t.Workflow, p.Name, t.PodName)
		}
	}
	return ""
}

// podNameNotNodes returns why the target's pod name cannot be its node's pod, or "".
func podNameNotNodes(t Target) string {
	if t.PodName == "" || argoworkflow.PodNameMatchesNode(t.PodName, t.Workflow, t.NodeID) {
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
