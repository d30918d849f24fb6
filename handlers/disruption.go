package handlers

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/logging"

	"function/eventing"
	"function/internal/argoworkflow"
	"function/internal/repair"
)

// disruption records an announced disruption on the pods it concerns and their workflows, and,
// when the machine is already gone, repairs them. No pod is deleted or evicted by us.
func (h *Handler) disruption(ctx context.Context, d *eventing.Disruption) error {
	log := logging.FromContext(ctx).With(zap.String("reason", d.Reason), zap.String("source", d.Source))
	ctx = logging.WithLogger(ctx, log)
	if d.PodName != "" && !h.o.Scope.NamespaceAllowed(d.PodNamespace) {
		return nil
	}
	pods, nodes, err := h.disruptedPods(ctx, d)
	if err != nil {
		return err
	}
	if len(pods) == 0 {
		log.Debugw("no workflow pod concerned", zap.Strings("nodes", nodes), zap.Strings("instances", d.InstanceIDs))
		return nil
	}
	sig := nodeWide{seen: h.received(), trigger: d.Source + " " + d.Reason, machine: d.Machine, reason: d.Reason, message: d.Message, announced: true}
	if d.Machine != eventing.MachineUnknown {
		// A pod whose Node is gone is repaired, its record naming the announced reason; one whose
		// Node exists gets the warning, for the repair its deletion will bring.
		sig.warning = &repair.Warning{Source: d.Source, Reason: d.Reason, Message: d.Message}
		return h.repairPods(ctx, pods, sig)
	}
	var errs []error
	for i := range pods {
		if err := h.warnOrRepairEnded(ctx, &pods[i], d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// warnOrRepairEnded records the disruption on a pod that may still run. A pod the API server
// already reports ended without its wait container reporting (its node rebooted under it, or
// the disruption was announced late) can never report its outputs: it gets the repair its own
// update would have brought, with the disruption as its reason (the shipped Triggers deliver no
// pod update).
func (h *Handler) warnOrRepairEnded(ctx context.Context, pod *corev1.Pod, d *eventing.Disruption) error {
	if !repair.PodFinished(pod) || repair.WaitReported(pod) || pod.DeletionTimestamp != nil || h.o.Scope.Check(pod.Namespace, pod.Labels) != nil {
		return h.warn(ctx, pod, d.Source, d.Reason, d.Message, h.received())
	}
	t, err := repair.TargetFromPod(pod, h.received(), d.Source+" "+d.Reason)
	if err != nil {
		logging.FromContext(ctx).Debugw("pod left alone", zap.String("pod", pod.Namespace+"/"+pod.Name), zap.Error(err))
		return nil
	}
	repair.Announce(&t, d.Reason, d.Message)
	_, err = h.o.Repairer.Repair(ctx, t)
	return err
}

// disruptedPods are the workflow pods a disruption names: its pod, or those on its Node, on its
// NodeClaim's Node, or on its instances' Nodes (nodes).
func (h *Handler) disruptedPods(ctx context.Context, d *eventing.Disruption) (pods []corev1.Pod, nodes []string, err error) {
	if d.PodName != "" {
		// A pod a disruption names that is gone, or not a workflow's, concerns no workflow.
		pod, err := h.workflowPodNamed(ctx, d.PodNamespace, d.PodName)
		switch {
		case errors.Is(err, ErrNotWorkflowPod):
			return nil, nil, nil
		case err != nil:
			return nil, nil, err
		case pod == nil:
			return nil, nil, nil
		}
		return []corev1.Pod{*pod}, nil, nil
	}
	if nodes, err = h.disruptedNodes(ctx, d); err != nil {
		return nil, nil, err
	}
	for _, n := range nodes {
		on, err := h.o.Finder.WorkflowPodsOn(ctx, n, h.o.Scope.Namespaces)
		if err != nil {
			return nil, nil, err
		}
		pods = append(pods, on...)
	}
	return pods, nodes, nil
}

// disruptedNodes are the Nodes a disruption names, found from its NodeClaim or instances.
func (h *Handler) disruptedNodes(ctx context.Context, d *eventing.Disruption) ([]string, error) {
	switch {
	case d.NodeName != "":
		return []string{d.NodeName}, nil
	case d.NodeClaimName != "":
		n, err := h.o.Finder.NodeOfClaim(ctx, d.NodeClaimName)
		if err != nil || n == "" {
			return nil, err
		}
		return []string{n}, nil
	case len(d.InstanceIDs) > 0:
		return h.o.Finder.NodesOfInstances(ctx, d.InstanceIDs)
	}
	return nil, nil
}

// warn records an announced disruption on a pod that may still run, and on its workflow.
func (h *Handler) warn(ctx context.Context, pod *corev1.Pod, source, reason, message string, seen time.Time) error {
	if h.o.Scope.Check(pod.Namespace, pod.Labels) != nil || repair.PodFinished(pod) || repair.WaitReported(pod) {
		return nil
	}
	w := repair.Warning{Source: source, Reason: reason, Message: message, Node: pod.Spec.NodeName, Time: seen.UTC().Truncate(time.Second)}
	if err := h.o.Repairer.RecordWarning(ctx, pod, w); err != nil {
		return err
	}
	logging.FromContext(ctx).Infow("disruption recorded", zap.String("pod", pod.Namespace+"/"+pod.Name), zap.String("workflow", pod.Labels[argoworkflow.LabelWorkflow]))
	return nil
}
