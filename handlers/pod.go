package handlers

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"function/config"
	"function/eventing"
	"function/internal/argoworkflow"
	"function/internal/metrics"
	"function/internal/repair"
)

// podChange repairs what a pod event points at. With the pod in the event (Resource mode) the
// decision to look further costs no API call; with a reference, the pod is read.
func (h *Handler) podChange(ctx context.Context, pc *eventing.PodChange) error {
	log := logging.FromContext(ctx).With(zap.String("pod", pc.Namespace+"/"+pc.Name), zap.String("op", string(pc.Op)))
	ctx = logging.WithLogger(ctx, log)
	if pc.Pod != nil {
		log.Debugw("event received", zap.String("workflow", pc.Pod.Labels[argoworkflow.LabelWorkflow]))
	} else {
		log.Debugw("event received")
	}
	if !h.o.Scope.NamespaceAllowed(pc.Namespace) {
		h.outOfScope(ctx, fmt.Errorf("%w: %q", config.ErrNamespaceOutOfScope, pc.Namespace))
		return nil
	}
	trigger := "pod " + string(pc.Op) + " event"
	pod, deleted := pc.Pod, pc.Op == eventing.OpDelete
	if pod == nil {
		live, err := h.workflowPodNamed(ctx, pc.Namespace, pc.Name)
		switch {
		case err != nil:
			return err
		case live == nil:
			return h.goneByName(ctx, pc, trigger)
		}
		pod, deleted = live, false
	}
	if err := h.o.Scope.Check(pod.Namespace, pod.Labels); err != nil {
		h.outOfScope(ctx, err)
		return nil
	}
	h.inScope()
	t, why, err := h.o.Repairer.PodTarget(ctx, pod, deleted, pc.Pod != nil, h.received(), trigger)
	switch {
	case errors.Is(err, repair.ErrNotATarget):
		return fmt.Errorf("%w: %v", eventing.ErrMalformed, err)
	case err != nil:
		return err
	case why != "":
		h.ignore(ctx, metrics.IgnoredNothingToDo, why)
		return nil
	}
	_, err = h.o.Repairer.Repair(ctx, t)
	return err
}

// workflowPodNamed reads a pod a Reference-mode event names; nil when it is gone. A pod without
// the workflow label is refused: the source lacks its label selector.
func (h *Handler) workflowPodNamed(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	pod, err := h.o.Kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading pod %s/%s: %w", namespace, name, err)
	}
	if _, ok := pod.Labels[argoworkflow.LabelWorkflow]; !ok {
		return nil, fmt.Errorf("%w: %s/%s has no %s label (give the ApiServerSource that selector)", ErrNotWorkflowPod, namespace, name, argoworkflow.LabelWorkflow)
	}
	return pod, nil
}

// goneByName handles a pod known only by name that no longer exists.
func (h *Handler) goneByName(ctx context.Context, pc *eventing.PodChange, trigger string) error {
	targets, err := h.o.Repairer.TargetsOfGonePod(ctx, pc.Namespace, pc.Name, h.received(), trigger)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		logging.FromContext(ctx).Debugw("ignored", zap.String("why", "pod gone and no incomplete task result matches it"))
	}
	var errs []error
	for _, t := range targets {
		if _, err := h.o.Repairer.Repair(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
