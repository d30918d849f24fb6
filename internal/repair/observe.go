package repair

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
)

// Observe reads what the decision needs, in an order that stops early: the Workflow (a finished
// or foreign one ends here after one call), the pod, the pod's Node (only when the pod has not
// finished: a gone Node means it can never report), and the task result.
func (r *Repairer) Observe(ctx context.Context, t Target) (*Observation, error) {
	o := &Observation{}
	wf, err := r.readWorkflow(ctx, t)
	if err != nil || wf == nil {
		if err != nil {
			return nil, err
		}
		return o, nil
	}
	o.Workflow = wf
	if WorkflowSkip(wf, r.opts.Scope) != "" || repairedBefore(wf, t) {
		if lateRecordCandidate(wf, t, r.opts.Scope) {
			o.Nodes, o.Storage, _ = argoworkflow.Nodes(wf)
		}
		return o, nil
	}
	if o.Nodes, o.Storage, err = argoworkflow.Nodes(wf); err != nil {
		// Unreadable compressed nodes only disable the last-resort step (which never writes
		// compressed nodes anyway); the task-result steps do not need them.
		o.Nodes, o.Storage = nil, argoworkflow.Compressed
	}
	if _, known := NodePodName(wf, o.Nodes, t.NodeID); !known {
		if o.NodePods, err = r.podsOfNode(ctx, wf, t.NodeID); err != nil {
			return nil, err
		}
	}
	if notNodesPod(t, o) != "" {
		return o, nil // not the node's pod: Decide says why, nothing more is read
	}
	if o.Pod, err = r.readPod(ctx, t); err != nil {
		return nil, err
	}
	if p := o.Pod; p != nil && t.PodUID != "" && p.UID != t.PodUID {
		// Another incarnation holds the name: it is left alone whatever else is read.
		return o, nil
	}
	// Whether the pod's Node exists is asked of the API server, never taken from the signal: a
	// Node delete or an instance message may be late, about an earlier Node of the same name, or
	// forged. Only asked when it decides something: the pod's status is not the step's outcome
	// (can it still report? may it go?), or it holds the status finalizer (may it be released?).
	if p := o.Pod; p != nil && p.Spec.NodeName != "" && (!statusIsOutcome(p) || slices.Contains(p.Finalizers, argoworkflow.FinalizerStatus)) {
		if o.HostGone, err = r.nodeGone(ctx, p); err != nil {
			return nil, err
		}
	}
	if o.TaskResult, err = r.readTaskResult(ctx, t); err != nil {
		return nil, err
	}
	return o, nil
}

// readWorkflow reads the target's Workflow; nil when it does not exist.
func (r *Repairer) readWorkflow(ctx context.Context, t Target) (*wfv1.Workflow, error) {
	wf, err := r.argo.ArgoprojV1alpha1().Workflows(t.Namespace).Get(ctx, t.Workflow, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading workflow %s/%s: %w", t.Namespace, t.Workflow, err)
	}
	return wf, nil
}

// readPod reads the target's pod by name; nil when it has none or it is gone.
func (r *Repairer) readPod(ctx context.Context, t Target) (*corev1.Pod, error) {
	if t.PodName == "" {
		return nil, nil
	}
	pod, err := r.kube.CoreV1().Pods(t.Namespace).Get(ctx, t.PodName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading pod %s/%s: %w", t.Namespace, t.PodName, err)
	}
	return pod, nil
}

// podsOfNode lists the pods of the Workflow incarnation that run the node: one LIST by the
// Workflow's label, for when the Workflow cannot name the node's pod.
func (r *Repairer) podsOfNode(ctx context.Context, wf *wfv1.Workflow, nodeID string) ([]corev1.Pod, error) {
	var out []corev1.Pod
	opts := metav1.ListOptions{LabelSelector: argoworkflow.LabelWorkflow + "=" + wf.Name, Limit: podsPageSize}
	for {
		pods, err := r.kube.CoreV1().Pods(wf.Namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing the pods of workflow %s/%s for node %s: %w", wf.Namespace, wf.Name, nodeID, err)
		}
		for _, p := range pods.Items {
			if id, _ := NodeIDOf(&p); id == nodeID && ownedBy(p.OwnerReferences, wf.UID) {
				out = append(out, p)
			}
		}
		if opts.Continue = pods.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// podsPageSize bounds one LIST of a workflow's pods.
const podsPageSize = 500

// readTaskResult reads the target node's task result; nil when there is none.
func (r *Repairer) readTaskResult(ctx context.Context, t Target) (*wfv1.WorkflowTaskResult, error) {
	tr, err := r.argo.ArgoprojV1alpha1().WorkflowTaskResults(t.Namespace).Get(ctx, t.NodeID, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading task result %s/%s: %w", t.Namespace, t.NodeID, err)
	}
	return tr, nil
}

func (r *Repairer) nodeGone(ctx context.Context, p *corev1.Pod) (bool, error) {
	_, err := r.kube.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading node %s of pod %s/%s: %w", p.Spec.NodeName, p.Namespace, p.Name, err)
	}
	return false, nil
}

// repairedBefore reports whether the workflow records that this very pod incarnation's node was
// already released (a re-delivered or duplicate event): nothing more to read, one call in all.
// A record of a partial repair (the finalizer released, the task result waiting for the pod's
// deletion) does not count.
func repairedBefore(wf *wfv1.Workflow, t Target) bool {
	if t.PodUID == "" {
		return false
	}
	rec, ok := Recorded(wf)[t.NodeID]
	if !ok || rec.PodUID != string(t.PodUID) {
		return false
	}
	return slices.ContainsFunc(rec.Actions, func(a string) bool {
		return a == string(CompleteTaskResult) || a == string(CreateTaskResult) || a == string(MarkNodeError)
	})
}

// TaskResultComplete reports whether the node's task result no longer waits: labelled complete,
// or gone (garbage-collected with a finished workflow). It is the one read a deleted pod whose
// wait container exited 0 costs: argoexec's exit code comes before its label flip.
func (r *Repairer) TaskResultComplete(ctx context.Context, namespace, nodeID string) (bool, error) {
	tr, err := r.argo.ArgoprojV1alpha1().WorkflowTaskResults(namespace).Get(ctx, nodeID, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading task result %s/%s: %w", namespace, nodeID, err)
	}
	return tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true", nil
}
