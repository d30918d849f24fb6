package repair

import (
	"context"
	"fmt"

	"function/internal/argoworkflow"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// RecordWarning writes an announced disruption where the repair and users will find it: an
// annotation on the pod, and on its Workflow an annotation plus a Kubernetes Event. Nothing is
// deleted or evicted. It is idempotent (the same warning again writes nothing) and, like every
// write here, carries resourceVersion preconditions. A pod or workflow that is gone or finished
// is skipped.
func (r *Repairer) RecordWarning(ctx context.Context, pod *corev1.Pod, w Warning) error {
	if err := r.warnPod(ctx, pod, w); err != nil {
		return err
	}
	wfName := pod.Labels[argoworkflow.LabelWorkflow]
	what := fmt.Sprintf("recording warning %s for pod %s on workflow %s/%s", w.Reason, pod.Name, pod.Namespace, wfName)
	for attempt := 1; ; attempt++ {
		wf, err := r.argo.ArgoprojV1alpha1().Workflows(pod.Namespace).Get(ctx, wfName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if WorkflowSkip(wf, r.opts.Scope) != "" {
			return nil
		}
		if prev, ok := Warnings(wf)[pod.Name]; ok && prev.Reason == w.Reason {
			return nil
		}
		ev := WarningEvent(wf, pod.Name, w, r.opts.Host)
		if _, err := r.kube.CoreV1().Events(wf.Namespace).Create(ctx, ev, r.createOptions()); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: creating event: %w", what, err)
		}
		patch := mergePatch(patchMeta{ResourceVersion: wf.ResourceVersion,
			Annotations: map[string]string{argoworkflow.AnnotationWarnings: WarningsWith(wf, pod.Name, w)}}, nil)
		_, err = r.argo.ArgoprojV1alpha1().Workflows(wf.Namespace).Patch(ctx, wf.Name, types.MergePatchType, patch, r.patchOptions())
		if err == nil {
			r.notifyWarned(ctx, wf, pod, w)
		}
		if !apierrors.IsConflict(err) || attempt >= max(r.opts.Attempts, 1) {
			return writeErr(err, what)
		}
	}
}

// warnPod annotates the pod; a pod already gone needs no annotation (its workflow gets one).
func (r *Repairer) warnPod(ctx context.Context, pod *corev1.Pod, w Warning) error {
	what := fmt.Sprintf("recording warning %s on pod %s/%s", w.Reason, pod.Namespace, pod.Name)
	for attempt := 1; ; attempt++ {
		if prev, ok := PodWarning(pod); ok && prev.Reason == w.Reason {
			return nil
		}
		patch := mergePatch(patchMeta{ResourceVersion: pod.ResourceVersion,
			Annotations: map[string]string{argoworkflow.AnnotationWarning: w.Marshal()}}, nil)
		_, err := r.kube.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, r.patchOptions())
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err) || attempt >= max(r.opts.Attempts, 1):
			return writeErr(err, what)
		}
		if pod, err = r.kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}
