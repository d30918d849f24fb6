// Package sweep is the safety net behind the event path: it scans Running workflows for nodes
// whose pod was taken away without the function hearing of it (the ApiServerSource adapter drops
// an event once its retries fail and reports nothing of what changed while its watch was down),
// and hands each to the same repair ladder the event handlers use. It runs from a PingSource
// tick (bounded by a time budget, resuming from a cursor kept on the cluster) and from the
// `argo-disruption-handler sweep` command.
package sweep

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
	"function/internal/repair"
)

// recentlyStarted mirrors Argo's RECENTLY_STARTED_POD_DURATION: the controller does not judge a
// node's missing pod within 10 s of its start (the pod may not be in its informer yet), nor do we.
const recentlyStarted = 10 * time.Second

// Candidate is a workflow node that looks stuck, and the target to repair it.
type Candidate struct {
	Target repair.Target
	// NodeName is the node's display name ("" when the nodes are offloaded).
	NodeName string
	// PodState says what became of the pod: "gone", "Terminating", "Failed"…
	PodState string
	// Why it was picked.
	Why string
}

// Candidates returns the nodes of a Running workflow that may need the ladder, given the
// workflow's pods (listed by its label) at time now. It is a cheap filter: the repair re-reads
// every object and decides for itself, so a candidate that turns out healthy costs reads, never a
// write. grace is how long a finished node may keep its task result incomplete, and a pod may stay
// Terminating, before it is picked (the wait container may still be uploading outputs).
// incomplete names nodes whose task result is known incomplete when neither the nodes nor the
// gate map can be read (offloaded nodes of Argo 3.7.1+).
func Candidates(wf *wfv1.Workflow, pods []corev1.Pod, now time.Time, grace time.Duration, incomplete ...string) []Candidate {
	byNode := podsByNode(pods)
	nodes, storage, err := argoworkflow.Nodes(wf)
	if err != nil || storage == argoworkflow.Offloaded {
		nodes = nil
	}
	var out []Candidate
	seen := map[string]bool{}
	for id, n := range nodes {
		if n.Type != wfv1.NodeTypePod || n.IsDaemoned() {
			continue
		}
		if why := nodeLooksStuck(&n, byNode[id], argoworkflow.GateHolds(wf, nodes, id), now, grace); why != "" {
			seen[id] = true
			out = append(out, candidate(wf, id, &n, byNode[id], why, now))
		}
	}
	// The gate map alone, for nodes we cannot see (offloaded or unreadable status, or an entry
	// whose node the status lost): an entry still false whose pod is gone, finished or
	// terminating.
	for id, done := range gateOf(wf, incomplete) {
		if _, visible := nodes[id]; done || seen[id] || visible {
			continue
		}
		switch pod := byNode[id]; {
		case pod == nil:
			out = append(out, candidate(wf, id, nil, nil, "task result incomplete, no pod for the node", now))
		case pod.DeletionTimestamp != nil || repair.PodFinished(pod):
			out = append(out, candidate(wf, id, nil, pod, "task result incomplete, pod "+podState(pod), now))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target.NodeID < out[j].Target.NodeID })
	return out
}

// NeedsPods reports whether the workflow can hold a candidate, and so whether its pods must be
// read: a Pod node not finished yet, or a task result still holding the gate. Every case of
// nodeLooksStuck and of the gate map needs one of them; a workflow with neither is passed over
// without a LIST.
func NeedsPods(wf *wfv1.Workflow, incomplete ...string) bool {
	nodes, storage, err := argoworkflow.Nodes(wf)
	if err != nil || storage == argoworkflow.Offloaded {
		nodes = nil
	}
	for id, n := range nodes {
		if n.Type == wfv1.NodeTypePod && !n.IsDaemoned() && (!repair.PhaseFulfilled(n.Phase) || argoworkflow.GateHolds(wf, nodes, id)) {
			return true
		}
	}
	for id, done := range gateOf(wf, incomplete) {
		if _, visible := nodes[id]; !done && !visible {
			return true
		}
	}
	return false
}

// podNodes counts the workflow's Pod nodes: how many pods a LIST of its pods may return.
func podNodes(wf *wfv1.Workflow) int {
	nodes, _, err := argoworkflow.Nodes(wf)
	if err != nil {
		return len(wf.Status.TaskResultsCompletionStatus)
	}
	n := 0
	for _, node := range nodes {
		if node.Type == wfv1.NodeTypePod {
			n++
		}
	}
	return n
}

// podsByNode indexes a workflow's pods by the node they run. When a node had several pods (a pod
// re-created under the same node; retries make new nodes, so this is rare) the newest is kept.
func podsByNode(pods []corev1.Pod) map[string]*corev1.Pod {
	byNode := make(map[string]*corev1.Pod, len(pods))
	for i := range pods {
		if id, ok := repair.NodeIDOf(&pods[i]); ok {
			if old, dup := byNode[id]; !dup || old.CreationTimestamp.Before(&pods[i].CreationTimestamp) {
				byNode[id] = &pods[i]
			}
		}
	}
	return byNode
}

// nodeLooksStuck says why Pod node n, whose pod is pod (nil: gone) and whose task result holds
// the gate or not, may need the ladder; "" when it looks healthy.
func nodeLooksStuck(n *wfv1.NodeStatus, pod *corev1.Pod, holds bool, now time.Time, grace time.Duration) string {
	switch {
	case pod == nil && n.Phase == wfv1.NodeRunning && now.Sub(n.StartedAt.Time) > recentlyStarted:
		return "node Running, its pod is gone"
	case pod == nil && holds && repair.PhaseFulfilled(n.Phase):
		// Nothing is left to report the outputs: no grace needed.
		return "node " + string(n.Phase) + ", its pod is gone, task result incomplete"
	case pod != nil && pod.DeletionTimestamp != nil && now.Sub(pod.DeletionTimestamp.Time) > grace && (!repair.PhaseFulfilled(n.Phase) || holds):
		return fmt.Sprintf("pod Terminating for %s", now.Sub(pod.DeletionTimestamp.Time).Round(time.Second))
	case pod != nil && holds && repair.PodFinished(pod) && !repair.WaitReported(pod) && now.Sub(n.StartedAt.Time) > grace:
		return "pod " + string(pod.Status.Phase) + " without its outputs reported"
	case pod != nil && holds && repair.PhaseFulfilled(n.Phase) && !n.FinishedAt.IsZero() && now.Sub(n.FinishedAt.Time) > grace:
		// Usually the wait container still saving outputs; the repair reads the pod and leaves
		// it alone while it can report.
		return fmt.Sprintf("node %s for %s, its task result still incomplete", n.Phase, now.Sub(n.FinishedAt.Time).Round(time.Second))
	}
	return ""
}

// gateOf is the workflow's task-result gate map, or, when it has none, the nodes known incomplete.
func gateOf(wf *wfv1.Workflow, incomplete []string) map[string]bool {
	gate := wf.Status.TaskResultsCompletionStatus
	if len(gate) == 0 && len(incomplete) > 0 {
		gate = map[string]bool{}
		for _, id := range incomplete {
			gate[id] = false
		}
	}
	return gate
}

func candidate(wf *wfv1.Workflow, id string, n *wfv1.NodeStatus, pod *corev1.Pod, why string, now time.Time) Candidate {
	c := Candidate{Why: why, PodState: podState(pod)}
	t := repair.Target{Namespace: wf.Namespace, Workflow: wf.Name, NodeID: id, Reason: repair.UnknownReason, Trigger: "sweep", StatusUnknown: true}
	switch {
	case pod != nil:
		if pt, err := repair.TargetFromPod(pod, now, "sweep"); err == nil {
			t = pt
			t.Workflow = wf.Name
		}
		if pod.DeletionTimestamp == nil {
			// Not deleted: the last-resort grace counts from the node's start, not from now.
			t.DeletedAt = time.Time{}
		}
	case n != nil:
		// The pod name is needed so the repair can check that no new pod took its place; when
		// the Workflow cannot name it, the repair lists the node's pods instead.
		t.PodName, _ = repair.NodePodName(wf, wfv1.Nodes{id: *n}, id)
	}
	// The Workflow read is the incarnation swept: a same-name successor is another.
	t.WorkflowUID = wf.UID
	if n != nil {
		c.NodeName = n.Name
	}
	if w, ok := repair.Warnings(wf)[t.PodName]; ok && t.Reason == repair.UnknownReason {
		t.Reason, t.Message = w.Reason, w.Message
	}
	c.Target = t
	return c
}

func podState(pod *corev1.Pod) string {
	switch {
	case pod == nil:
		return "gone"
	case pod.DeletionTimestamp != nil:
		return "Terminating (" + string(pod.Status.Phase) + ")"
	default:
		return string(pod.Status.Phase)
	}
}
