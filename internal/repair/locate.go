package repair

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"function/internal/argoworkflow"
	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// locatePageSize bounds one LIST of task results.
const locatePageSize = 500

// TargetsOfGonePod finds the targets of a pod that is gone and of which only the namespace and name
// are known (a Reference-mode delete carries no labels). A task result is named by its node ID,
// "<workflow>-<hash>", and the pod "<workflow>-<template>-<hash>" (or the node ID itself), so the
// likely node IDs are read by name first; only a name none of them fits (a prefix cut by Argo's
// length bound, or no task result at all) costs one LIST of the namespace's incomplete task
// results. A pod whose task result is already complete needs no task-result repair, and is left
// to the periodic sweep.
func (r *Repairer) TargetsOfGonePod(ctx context.Context, namespace, podName string, seen time.Time, trigger string) ([]Target, error) {
	target := func(wf string, tr *wfv1.WorkflowTaskResult) Target {
		// The Workflow's UID is the task result's owner, as the cluster shows it; the pod's last
		// status is unknown (a reference carries none).
		return Target{Namespace: namespace, Workflow: wf, NodeID: tr.Name, PodName: podName, DeletedAt: seen,
			WorkflowUID: WorkflowOwner(tr.OwnerReferences, wf), StatusUnknown: true, Reason: UnknownReason, Trigger: trigger}
	}
	for _, id := range likelyNodeIDs(podName) {
		tr, err := r.argo.ArgoprojV1alpha1().WorkflowTaskResults(namespace).Get(ctx, id, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, fmt.Errorf("reading task result %s/%s for pod %s: %w", namespace, id, podName, err)
		}
		wf, ok := podsTaskResult(podName, tr)
		if !ok {
			continue
		}
		if tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "false" {
			return nil, nil
		}
		return []Target{target(wf, tr)}, nil
	}
	var out []Target
	opts := metav1.ListOptions{LabelSelector: argoworkflow.LabelReportOutputsCompleted + "=false", Limit: locatePageSize}
	for {
		list, err := r.argo.ArgoprojV1alpha1().WorkflowTaskResults(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing incomplete task results in %s for pod %s: %w", namespace, podName, err)
		}
		for i := range list.Items {
			if wf, ok := podsTaskResult(podName, &list.Items[i]); ok {
				out = append(out, target(wf, &list.Items[i]))
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// podsTaskResult reports whether tr can be the task result of the pod, and of which workflow.
func podsTaskResult(podName string, tr *wfv1.WorkflowTaskResult) (workflow string, ok bool) {
	wf := tr.Labels[argoworkflow.LabelWorkflow]
	return wf, wf != "" && argoworkflow.PodNameMatchesNode(podName, wf, tr.Name)
}

// likelyNodeIDs are the node IDs a pod name most likely stands for, most likely first: a
// one-word template, a two-word one, then the name itself (a root node, or Argo's v1 names).
func likelyNodeIDs(podName string) []string {
	parts := strings.Split(podName, "-")
	hash := parts[len(parts)-1]
	var ids []string
	for _, drop := range []int{2, 3} {
		if len(parts) > drop {
			ids = append(ids, strings.Join(parts[:len(parts)-drop], "-")+"-"+hash)
		}
	}
	return append(ids, podName)
}
