package handlers

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"function/eventing"
)

// nodeGone repairs every workflow pod still bound to a Node that no longer exists. No pod event
// may ever come for them: a pod held by Argo's status finalizer on a vanished Node is not
// updated until PodGC gets to it, and a re-listed watch reports nothing of what it missed. The
// delete event is only a claim: a Node of that name that exists now (a late re-delivery after a
// new machine took the name, a NodeClaim whose Node remains) proves the pods bound to the name
// live, and nothing is done.
func (h *Handler) nodeGone(ctx context.Context, g *eventing.NodeGone) error {
	log := logging.FromContext(ctx).With(zap.String("node", g.NodeName), zap.String("kind", g.Kind), zap.String("providerID", g.ProviderID))
	ctx = logging.WithLogger(ctx, log)
	switch _, err := h.o.Kube.CoreV1().Nodes().Get(ctx, g.NodeName, metav1.GetOptions{}); {
	case err == nil:
		log.Infow("node exists: the delete event is about an earlier node of that name, or its machine still runs; nothing done")
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("reading node %s named by a %s delete: %w", g.NodeName, g.Kind, err)
	}
	machine, err := h.machineGoing(ctx, g)
	if err != nil {
		return err
	}
	message := fmt.Sprintf("%s %s deleted", g.Kind, g.NodeName)
	if g.ProviderID != "" {
		message += " (" + g.ProviderID + ")"
	}
	pods, err := h.o.Finder.WorkflowPodsOn(ctx, g.NodeName, h.o.Scope.Namespaces)
	if err != nil {
		return err
	}
	return h.repairPods(ctx, pods, nodeWide{seen: h.received(), trigger: "node delete event", node: g.NodeName, machine: machine, reason: "NodeDeleted", message: message})
}

// machineGoing returns what the cluster confirms of a gone Node's machine. A delete's claim
// that the machine is terminated (a NodeClaim delete, a Karpenter-labelled Node) stands only
// while its NodeClaim is gone or being deleted; a Node whose finalizer was removed by hand
// leaves a NodeClaim that is neither, and its machine may still run the pods.
func (h *Handler) machineGoing(ctx context.Context, g *eventing.NodeGone) (eventing.Machine, error) {
	if g.Machine != eventing.MachineTerminated {
		return g.Machine, nil
	}
	log := logging.FromContext(ctx)
	if g.Claim == "" {
		log.Infow("machine not proven terminated: the delete names no NodeClaim; its pods are left to PodGC")
		return eventing.MachineUnknown, nil
	}
	going, node, err := h.o.Finder.ClaimGoing(ctx, g.Claim)
	switch {
	case err != nil:
		return eventing.MachineUnknown, fmt.Errorf("confirming the machine of %s %s: %w", g.Kind, g.NodeName, err)
	case !going:
		log.Infow("machine not proven terminated: its NodeClaim exists and is not being deleted; its pods are left to PodGC",
			zap.String("nodeClaim", g.Claim), zap.String("claimNode", node))
		return eventing.MachineUnknown, nil
	case node != "" && node != g.NodeName:
		log.Infow("machine not proven terminated: the NodeClaim names another Node", zap.String("nodeClaim", g.Claim), zap.String("claimNode", node))
		return eventing.MachineUnknown, nil
	}
	return eventing.MachineTerminated, nil
}
