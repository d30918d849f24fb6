package localcluster

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
)

// waitNodesReady waits until kwok reports the first n kwok Nodes Ready.
func (c *Cluster) waitNodesReady(ctx context.Context, n int, timeout time.Duration) error {
	var notReady string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		c.mu.Lock()
		kp := c.procs["kwok"]
		c.mu.Unlock()
		if kp != nil {
			if err := kp.exitErr(); err != nil {
				return false, err
			}
		}
		for i := 0; i < n; i++ {
			node, err := c.kube.CoreV1().Nodes().Get(ctx, NodeName(i), metav1.GetOptions{})
			if err != nil {
				notReady = NodeName(i) + ": " + err.Error()
				return false, nil
			}
			ready := false
			for _, cond := range node.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			if !ready {
				notReady = NodeName(i)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("kwok nodes not ready (%s): %w", notReady, err)
	}
	return nil
}

// EnsureNamespace creates the namespace ns if it does not exist.
func (c *Cluster) EnsureNamespace(ctx context.Context, ns string) error {
	_, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	return nil
}

// CreateTaskResult creates the WorkflowTaskResult the Argo `wait` container
// would create at pod start (no wait container runs under kwok): name =
// nodeID, labels workflows.argoproj.io/workflow=<wf> and
// workflows.argoproj.io/report-outputs-completed=<completed>, owned by the
// Workflow. Since Argo v3.5.3 the controller does not complete a workflow
// while such a result is missing or "false" (3.7.1+: until it is synced).
func (c *Cluster) CreateTaskResult(ctx context.Context, namespace, workflow, workflowUID, nodeID string, completed bool) error {
	tr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "WorkflowTaskResult",
		"metadata": map[string]any{
			"name":      nodeID,
			"namespace": namespace,
			"labels": map[string]any{
				"workflows.argoproj.io/workflow":                 workflow,
				"workflows.argoproj.io/report-outputs-completed": fmt.Sprint(completed),
			},
			"ownerReferences": []any{map[string]any{
				"apiVersion": "argoproj.io/v1alpha1",
				"kind":       "Workflow",
				"name":       workflow,
				"uid":        workflowUID,
			}},
		},
	}}
	_, err := c.dyn.Resource(WorkflowTaskResultGVR).Namespace(namespace).Create(ctx, tr, metav1.CreateOptions{})
	return err
}

// SetTaskResultCompleted flips the report-outputs-completed label, as the
// wait container does when it has reported the outputs.
func (c *Cluster) SetTaskResultCompleted(ctx context.Context, namespace, nodeID string, completed bool) error {
	patch := fmt.Sprintf(`{"metadata":{"labels":{"workflows.argoproj.io/report-outputs-completed":%q}}}`, fmt.Sprint(completed))
	_, err := c.dyn.Resource(WorkflowTaskResultGVR).Namespace(namespace).Patch(ctx, nodeID, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	return err
}
