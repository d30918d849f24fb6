//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"function/internal/localcluster"
	"function/internal/localcluster/scenario"
)

// TestFailedPodRestart runs Argo 4's opt-in failedPodRestart (ADH_E2E_RESTART_ARGO, default
// v4.0.7; the controller's ConfigMap sets failedPodRestart.enabled) with the function fed by the
// real ApiServerSource adapter. A running step's pod is failed as the kubelet fails a pod it
// evicts before the main container started (phase Failed, reason Evicted, main never started,
// the wait container killed after it created the task result). The controller sets the node
// Pending ("Pod auto-restarting due to Evicted"), deletes the pod by UID and creates it again
// under the same name. The function receives that delete and must leave the node alone: the task
// result stays "false" for the new incarnation's executor (which never resets a label), and no
// record or Event claims a repair. The new pod then succeeds, and so does the workflow.
// ADH_E2E_RESTART_FUNCTION runs another build of the function instead.
func TestFailedPodRestart(t *testing.T) {
	version := env("ADH_E2E_RESTART_ARGO", "v4.0.7")
	ctx := context.Background()
	bin, c, e := functionStack(ctx, t, localcluster.Options{ArgoVersion: version, Nodes: 1,
		ArgoConfig: map[string]string{"failedPodRestart": "enabled: true\nmaxRestarts: 3\n"}}, 150*time.Second)
	if err := e.EnsureNamespace(ctx, nsWith); err != nil {
		t.Fatal(err)
	}
	if other := os.Getenv("ADH_E2E_RESTART_FUNCTION"); other != "" {
		bin = other // another build, e.g. one from before the rule, to see it fail
	}
	fn := runFunction(ctx, t, bin, c, map[string]string{"ADH_NAMESPACES": nsWith})
	startAdapter(t, c, fn.URL, []string{nsWith}, workflowPods)
	wf, pod, nodeID, err := e.RunningStep(ctx, "restart-", scenario.Spec{Namespace: nsWith, Node: localcluster.NodeName(0)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the controller has seen the pod Running

	evicted := map[string]any{"status": map[string]any{
		"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
		"containerStatuses": []any{
			map[string]any{"name": "main", "image": "alpine:3.20", "imageID": "", "ready": false, "restartCount": 0,
				"state": map[string]any{"terminated": map[string]any{"exitCode": 137, "reason": "ContainerStatusUnknown",
					"message": "The container could not be located when the pod was terminated"}}},
			map[string]any{"name": "wait", "image": "argoexec", "imageID": "", "ready": false, "restartCount": 0,
				"state": map[string]any{"terminated": map[string]any{"exitCode": 137, "reason": "Error",
					"startedAt": pod.CreationTimestamp.UTC().Format(time.RFC3339), "finishedAt": time.Now().UTC().Format(time.RFC3339)}}},
		},
	}}
	body, _ := json.Marshal(evicted)
	if _, err := e.Kube.CoreV1().Pods(nsWith).Patch(ctx, pod.Name, types.MergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	t.Logf("pod %s failed as an eviction before its main container started", pod.Name)

	var pending, gone, recreated time.Duration
	var again *corev1.Pod
	if err := waitFor(ctx, 90*time.Second, func() bool {
		if pending == 0 {
			if w, err := e.Argo.ArgoprojV1alpha1().Workflows(nsWith).Get(ctx, wf.Name, metav1.GetOptions{}); err == nil {
				if n := w.Status.Nodes[nodeID]; n.Phase == "Pending" && strings.HasPrefix(n.Message, "Pod auto-restarting") {
					pending = time.Since(t0)
				}
			}
		}
		p, err := e.Kube.CoreV1().Pods(nsWith).Get(ctx, pod.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) && gone == 0:
			gone = time.Since(t0)
		case err == nil && p.UID != pod.UID:
			if recreated == 0 {
				recreated = time.Since(t0)
			}
			again = p
		}
		return recreated > 0 && again != nil && again.Status.Phase == corev1.PodRunning
	}); err != nil {
		t.Fatalf("Argo %s did not restart the pod (node Pending after %v, pod gone after %v, re-created after %v; 0 = not seen): is failedPodRestart on?", version, pending, gone, recreated)
	}
	t.Logf("Argo %s: node Pending \"Pod auto-restarting\" %.2f s, old pod gone %.2f s (seen), new incarnation %s %.2f s",
		version, pending.Seconds(), gone.Seconds(), again.UID, recreated.Seconds())
	time.Sleep(3 * time.Second) // the function's follow-ups and any write would have landed

	if !fn.LogContains("failed before its main container started") {
		t.Errorf("the function's log does not show it decided on the restarted pod's delete (see %s)", c.LogDir())
	}
	noRepairWritten(ctx, t, e, nsWith, wf.Name, nodeID, "a pod the controller restarts")

	// The new incarnation runs to its end, as its wait container would report it.
	if err := c.CompletePod(ctx, nsWith, again.Name, true); err != nil {
		t.Fatal(err)
	}
	if err := c.SetTaskResultCompleted(ctx, nsWith, nodeID, true); err != nil {
		t.Fatal(err)
	}
	var final string
	if err := waitFor(ctx, 60*time.Second, func() bool {
		cur, err := e.Argo.ArgoprojV1alpha1().Workflows(nsWith).Get(ctx, wf.Name, metav1.GetOptions{})
		if err == nil && cur.Status.Phase.Completed() {
			final = string(cur.Status.Phase)
			return true
		}
		return false
	}); err != nil || final != "Succeeded" {
		t.Errorf("workflow %s after the restarted pod succeeded: %q (%v), want Succeeded", wf.Name, final, err)
	}
	u, err := c.Dynamic().Resource(localcluster.WorkflowGVR).Namespace(nsWith).Get(ctx, wf.Name, metav1.GetOptions{})
	if err == nil {
		restarts, _, _ := unstructured.NestedInt64(u.Object, "status", "nodes", nodeID, "failedPodRestarts")
		t.Logf("workflow %s ended %s, node failedPodRestarts %d", wf.Name, final, restarts)
	}
}
