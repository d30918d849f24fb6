package repair

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"function/record"
	"function/workflowmeta"
)

// locatePageSize bounds one LIST of task results.
const locatePageSize = 500

// LocateByPodName finds the targets of a pod that is gone and of which only the namespace and name
// are known (a Reference-mode delete carries no labels). Incomplete task results are named by
// node ID and labelled with their workflow; the pod name's hash suffix equals the node ID's, so
// one LIST of the namespace's incomplete task results finds the node. A pod whose task result is
// already complete needs no task-result repair, and is left to the periodic sweep.
func (r *Repairer) LocateByPodName(ctx context.Context, namespace, podName string, seen time.Time, trigger string) ([]Target, error) {
	var out []Target
	opts := metav1.ListOptions{LabelSelector: workflowmeta.LabelReportOutputsCompleted + "=false", Limit: locatePageSize}
	for {
		list, err := r.argo.ArgoprojV1alpha1().WorkflowTaskResults(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing incomplete task results in %s for pod %s: %w", namespace, podName, err)
		}
		for _, tr := range list.Items {
			wf := tr.Labels[workflowmeta.LabelWorkflow]
			if wf != "" && workflowmeta.PodNameMatchesNode(podName, wf, tr.Name) {
				out = append(out, Target{
					Namespace: namespace, Workflow: wf, NodeID: tr.Name, PodName: podName,
					DeletedAt: seen, Reason: record.UnknownReason, Trigger: trigger,
				})
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}
