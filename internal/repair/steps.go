package repair

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"function/internal/argoworkflow"
	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// errLostRace is returned by a step whose precondition failed: someone wrote the object since
// it was read (409), or created it (AlreadyExists). Repair then re-reads and re-decides.
var errLostRace = errors.New("lost a race")

// Every write below is a JSON merge patch that carries metadata.resourceVersion: the API server
// applies it only to the version we decided on, and answers 409 otherwise. Nothing is ever
// overwritten blindly, and no whole object is PUT (that would drop fields our Argo structs do not
// know, such as taskResultSynced on older or newer controllers).

func (r *Repairer) patchOptions() metav1.PatchOptions {
	o := metav1.PatchOptions{FieldManager: argoworkflow.Component}
	if r.opts.DryRun {
		o.DryRun = []string{metav1.DryRunAll}
	}
	return o
}

func (r *Repairer) createOptions() metav1.CreateOptions {
	o := metav1.CreateOptions{FieldManager: argoworkflow.Component}
	if r.opts.DryRun {
		o.DryRun = []string{metav1.DryRunAll}
	}
	return o
}

// patchMeta is the metadata part of a merge patch.
type patchMeta struct {
	// ResourceVersion is the precondition of every patch that depends on what was read; only
	// the record annotation, a key of our own, is written without it (UID instead).
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	UID             types.UID         `json:"uid,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	// Finalizers is a pointer so that an empty list is sent as [] (merge patch replaces lists).
	Finalizers *[]string `json:"finalizers,omitempty"`
}

func mergePatch(m patchMeta, status any) []byte {
	body := map[string]any{"metadata": m}
	if status != nil {
		body["status"] = status
	}
	b, _ := json.Marshal(body) // maps of strings and structs of strings: cannot fail
	return b
}

// writeErr classifies a write's error: a lost precondition becomes errLostRace; anything else
// is returned naming the object.
func writeErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return fmt.Errorf("%s: %w: %v", what, errLostRace, err)
	case apierrors.IsNotFound(err):
		// The object vanished between read and write: re-decide on the new state.
		return fmt.Errorf("%s: %w: %v", what, errLostRace, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// completeTaskResult is ladder step 1: label the task result complete. The controller then
// marks the node, retries, runs exit handlers and finishes the workflow itself (v3.5.3 → 4.x,
// inline, compressed or offloaded nodes alike). Only called once the pod can no longer report.
func (r *Repairer) completeTaskResult(ctx context.Context, tr *wfv1.WorkflowTaskResult, rec Record) (*wfv1.WorkflowTaskResult, error) {
	patch := mergePatch(patchMeta{
		ResourceVersion: tr.ResourceVersion,
		Labels:          map[string]string{argoworkflow.LabelReportOutputsCompleted: "true", argoworkflow.LabelRepaired: string(CompleteTaskResult)},
		Annotations:     map[string]string{argoworkflow.AnnotationRepaired: rec.Marshal()},
	}, nil)
	done, err := r.argo.ArgoprojV1alpha1().WorkflowTaskResults(tr.Namespace).Patch(ctx, tr.Name, types.MergePatchType, patch, r.patchOptions())
	return done, writeErr(err, fmt.Sprintf("completing task result %s/%s", tr.Namespace, tr.Name))
}

// errRecreated says a new incarnation of the pod appeared while its node's task result was being
// completed: the completion was undone, and the new pod reports for itself.
var errRecreated = errors.New("pod re-created under the same name while its task result was completed")

// guardRecreation runs right after a task result of a gone pod was completed. Argo 3.7 re-creates
// the pod of a node whose task result it still saw incomplete, under the same name, and the new
// executor never sets the label back to "false": our "true" would open the new incarnation's gate
// before it ran. So the name is read again; a pod there now is that new incarnation, and the
// completion is undone (only while the object still carries our own mark).
func (r *Repairer) guardRecreation(ctx context.Context, t Target, tr *wfv1.WorkflowTaskResult) error {
	if r.opts.DryRun || tr == nil || t.PodName == "" {
		return nil
	}
	pod, err := r.kube.CoreV1().Pods(t.Namespace).Get(ctx, t.PodName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("re-reading pod %s/%s after completing its task result: %w", t.Namespace, t.PodName, err)
	case t.PodUID != "" && pod.UID == t.PodUID:
		return nil
	}
	for range 3 {
		err = r.undoCompletion(ctx, tr)
		if !apierrors.IsConflict(err) {
			break
		}
		if tr, err = r.argo.ArgoprojV1alpha1().WorkflowTaskResults(tr.Namespace).Get(ctx, tr.Name, metav1.GetOptions{}); err != nil {
			break
		}
		if tr.Labels[argoworkflow.LabelRepaired] != string(CompleteTaskResult) || tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
			return fmt.Errorf("%s/%s: %w (uid %s); our mark is gone: left as it is", t.Namespace, t.PodName, errRecreated, pod.UID)
		}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("undoing the completion of task result %s/%s: %w", tr.Namespace, tr.Name, err)
	}
	return fmt.Errorf("%s/%s: %w (uid %s): undone", t.Namespace, t.PodName, errRecreated, pod.UID)
}

// undoCompletion puts back the task result as the executor left it, preconditioned on the version
// our completion produced.
func (r *Repairer) undoCompletion(ctx context.Context, tr *wfv1.WorkflowTaskResult) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": tr.ResourceVersion,
		"labels":          map[string]any{argoworkflow.LabelReportOutputsCompleted: "false", argoworkflow.LabelRepaired: nil},
		"annotations":     map[string]any{argoworkflow.AnnotationRepaired: nil},
	}}) // maps of strings and nils: cannot fail
	_, err := r.argo.ArgoprojV1alpha1().WorkflowTaskResults(tr.Namespace).Patch(ctx, tr.Name, types.MergePatchType, patch, r.patchOptions())
	return err
}

// createTaskResult is ladder step 2: the task result object is missing while the workflow's gate
// still waits on it (it was deleted, or the wait container died before creating it). It is
// created as the executor would (workflow/executor/taskresult.go), already complete. On 3.5/3.6
// patching the map alone would be undone by nothing but also healed by nothing; the object heals
// every version.
func (r *Repairer) createTaskResult(ctx context.Context, t Target, wf *wfv1.Workflow, rec Record) (*wfv1.WorkflowTaskResult, error) {
	labels := map[string]string{
		argoworkflow.LabelWorkflow:               wf.Name,
		argoworkflow.LabelReportOutputsCompleted: "true",
	}
	if r.opts.Scope.ControllerInstanceID != "" {
		labels[argoworkflow.LabelInstanceID] = r.opts.Scope.ControllerInstanceID
	}
	tr := &wfv1.WorkflowTaskResult{
		TypeMeta: metav1.TypeMeta{APIVersion: wfv1.SchemeGroupVersion.String(), Kind: "WorkflowTaskResult"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        t.NodeID,
			Namespace:   wf.Namespace,
			Labels:      labels,
			Annotations: map[string]string{argoworkflow.AnnotationRepaired: rec.Marshal()},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: wfv1.SchemeGroupVersion.String(),
				Kind:       "Workflow",
				Name:       wf.Name,
				UID:        wf.UID,
			}},
		},
	}
	done, err := r.argo.ArgoprojV1alpha1().WorkflowTaskResults(wf.Namespace).Create(ctx, tr, r.createOptions())
	return done, writeErr(err, fmt.Sprintf("creating task result %s/%s", wf.Namespace, t.NodeID))
}

// releaseStatusFinalizer is ladder step 3: a pod stuck Terminating on a Node that no longer
// exists keeps Argo's status finalizer for ever before 3.6.16 / 3.7.7 (nothing is left to capture:
// the kubelet is gone). Only that finalizer is removed; others stay.
func (r *Repairer) releaseStatusFinalizer(ctx context.Context, pod *corev1.Pod, rec Record) (*corev1.Pod, error) {
	rest := slices.DeleteFunc(slices.Clone(pod.Finalizers), func(f string) bool { return f == argoworkflow.FinalizerStatus })
	if rest == nil {
		rest = []string{}
	}
	patch := mergePatch(patchMeta{
		ResourceVersion: pod.ResourceVersion,
		Finalizers:      &rest,
		Annotations:     map[string]string{argoworkflow.AnnotationRepaired: rec.Marshal()},
	}, nil)
	released, err := r.kube.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, r.patchOptions())
	return released, writeErr(err, fmt.Sprintf("releasing finalizer of pod %s/%s on gone node %s", pod.Namespace, pod.Name, pod.Spec.NodeName))
}

// deleteOrphanedPod force-deletes (grace 0) the pod of a terminated machine, preconditioned on
// the incarnation and the version decided on: a pod re-created under the same name is never
// touched, and one changed since it was read (PodGC setting it Failed, say) is a lost race that
// makes the caller undo its completion and re-decide. A pod already gone is success.
func (r *Repairer) deleteOrphanedPod(ctx context.Context, pod *corev1.Pod) error {
	grace := int64(0)
	uid, version := pod.UID, pod.ResourceVersion
	o := metav1.DeleteOptions{GracePeriodSeconds: &grace, Preconditions: &metav1.Preconditions{UID: &uid}}
	if version != "" && !r.opts.DryRun {
		// A dry run's released pod does not carry the version a real release would make.
		o.Preconditions.ResourceVersion = &version
	}
	if r.opts.DryRun {
		o.DryRun = []string{metav1.DryRunAll}
	}
	err := r.kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, o)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return writeErr(err, fmt.Sprintf("deleting pod %s/%s of terminated node %s", pod.Namespace, pod.Name, pod.Spec.NodeName))
}

// nodeErrorPatch is the part of a Pod node that ladder step 4 sets. The phase is Error, never
// Failed: Error is what the controller itself sets for a vanished pod, and what retryPolicy
// OnError/Always and "pod deleted" expressions are written against.
type nodeErrorPatch struct {
	Phase      wfv1.NodePhase `json:"phase"`
	Message    string         `json:"message"`
	FinishedAt metav1.Time    `json:"finishedAt"`
}

// PodDeletedMessage is the node message the controller writes for a vanished pod; 3.5.11 heals
// only on this exact text, and users' retry expressions match it.
const PodDeletedMessage = "pod deleted"

// markNodeError is ladder step 4, the last resort: only inline nodes (Decide checks), only the one
// node, with the record annotation in the same patch (when recording) so both land together.
func (r *Repairer) markNodeError(ctx context.Context, wf *wfv1.Workflow, nodeID string, rec Record, annotate bool) error {
	status := map[string]any{"nodes": map[string]nodeErrorPatch{nodeID: {
		Phase:      wfv1.NodeError,
		Message:    PodDeletedMessage,
		FinishedAt: metav1.NewTime(rec.Time),
	}}}
	m := patchMeta{ResourceVersion: wf.ResourceVersion}
	if annotate {
		m.Annotations = map[string]string{AnnotationKey(wf.Name, nodeID): rec.Marshal()}
	}
	patch := mergePatch(m, status)
	_, err := r.argo.ArgoprojV1alpha1().Workflows(wf.Namespace).Patch(ctx, wf.Name, types.MergePatchType, patch, r.patchOptions())
	return writeErr(err, fmt.Sprintf("marking node %s of workflow %s/%s Error", nodeID, wf.Namespace, wf.Name))
}
