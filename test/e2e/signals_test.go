//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/scenario"
	"function/internal/repair"
)

// TestDisruptionSignals proves the disruption-signal families on the real control plane
// (Argo ADH_E2E_SIGNALS_ARGO, default v3.7.18, with the status finalizer on), the function fed by
// the real ApiServerSource adapter watching Nodes and Events (and, for the second part, pods):
//  1. a Karpenter-managed Node deleted while its workflow pod holds Argo's status finalizer, with
//     no pod event delivered at all: the Node delete event releases the finalizer, deletes the
//     orphaned pod and completes the task result within a second, and the workflow leaves
//     Running at the controller's next reconcile (without the deletion the task result would
//     wait for PodGC: 40 s quarantine, then Failed with containers "running", which a controller
//     reads as success once the task result is complete);
//  2. a Karpenter SpotInterrupted Event on a Node, then the pod's deletion: the Workflow's record
//     says SpotInterrupted.
func TestDisruptionSignals(t *testing.T) {
	version := env("ADH_E2E_SIGNALS_ARGO", "v3.7.18")
	ctx := context.Background()
	bin, c, e := functionStack(ctx, t, localcluster.Options{ArgoVersion: version, Nodes: 2,
		ArgoEnv: map[string]string{"ARGO_POD_STATUS_CAPTURE_FINALIZER": "true"}}, 150*time.Second)
	if err := e.EnsureNamespace(ctx, nsWith); err != nil {
		t.Fatal(err)
	}
	fn := runFunction(ctx, t, bin, c, map[string]string{"ADH_NAMESPACES": nsWith})
	nodesAndEvents := []localcluster.AdapterResource{{Version: "v1", Resource: "nodes"}, {Version: "v1", Resource: "events"}}
	var report []string

	// 2 first, while kwok runs: a Karpenter SpotInterrupted Event, then the pod is deleted.
	startAdapter(t, c, fn.URL, []string{nsWith, "default"}, append(nodesAndEvents, workflowPods)...)
	node1 := localcluster.NodeName(1)
	wf, pod, _, err := e.RunningStep(ctx, "sig-spot-", scenario.Spec{Namespace: nsWith, Node: node1})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	kev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: node1 + ".spot", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node1, APIVersion: "v1"},
		Reason:         "SpotInterrupted", Message: "Spot interruption warning was triggered", Type: corev1.EventTypeWarning,
		Source: corev1.EventSource{Component: "karpenter"}, FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	if _, err := e.Kube.CoreV1().Events("default").Create(ctx, kev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	warned := time.Now()
	if err := waitFor(ctx, 10*time.Second, func() bool {
		p, err := e.Kube.CoreV1().Pods(nsWith).Get(ctx, pod.Name, metav1.GetOptions{})
		w, ok := repair.PodWarning(orEmpty(p, err))
		return ok && w.Reason == "SpotInterrupted"
	}); err != nil {
		t.Fatalf("SpotInterrupted not recorded on pod %s: %v", pod.Name, err)
	}
	report = append(report, fmt.Sprintf("Karpenter SpotInterrupted Event created → warning on the pod: %s", since(warned)))
	time.Sleep(11 * time.Second)
	t0, err := e.Delete(ctx, pod, scenario.Force)
	if err != nil {
		t.Fatal(err)
	}
	// On a live Node the kubelet (kwok) reports the containers killed (exit 143) while Argo's
	// status finalizer holds the pod, and from 3.6.0 the controller completes the task result of a
	// wait container that exited non-zero itself: the workflow may end before the pod's delete
	// reaches the function (the shipped Triggers deliver no update). Either the function repaired
	// it and recorded the warning's reason, or the controller did and the warning stays on the
	// Workflow; never Succeeded, never stuck. The controller's own status write does not requeue
	// the workflow (it updates its informer's store first), so the reconcile that completes the task
	// result can leave it Running until the next event: at worst the pod's real delete, when the
	// controller releases the status finalizer 2 min after the deletion (docs/argo-controller.md).
	var rec repair.Record
	var recorded bool
	var cur *wfv1.Workflow
	if err := waitFor(ctx, 150*time.Second, func() bool {
		w, err := e.Argo.ArgoprojV1alpha1().Workflows(nsWith).Get(ctx, wf.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		cur = w
		rec, recorded = repair.Recorded(w)[pod.Annotations[argoworkflow.AnnotationNodeID]]
		return recorded || w.Status.Phase.Completed()
	}); err != nil {
		t.Fatalf("workflow %s neither repaired nor finished 150 s after its pod's deletion (the status finalizer is released after 2 min)", wf.Name)
	}
	switch {
	case recorded:
		report = append(report, fmt.Sprintf("pod force-deleted → repair recorded on the Workflow: %s, reason %q (%s)", since(t0), rec.Reason, rec.Message))
		if rec.Reason != "SpotInterrupted" {
			t.Errorf("record reason = %q, want SpotInterrupted", rec.Reason)
		}
	case cur.Status.Phase == wfv1.WorkflowSucceeded:
		t.Errorf("workflow %s Succeeded after its step's pod was force-deleted", wf.Name)
	default:
		w, ok := repair.Warnings(cur)[pod.Name]
		report = append(report, fmt.Sprintf("pod force-deleted → the controller finished the workflow itself (%s %q) %s after; warning on the Workflow: %q", cur.Status.Phase, cur.Status.Message, since(t0), w.Reason))
		if !ok || w.Reason != "SpotInterrupted" {
			t.Errorf("workflow %s finished without the SpotInterrupted warning (%v)", wf.Name, cur.Annotations)
		}
	}

	// 1: the Karpenter-managed Node of a pod holding the status finalizer is deleted (Karpenter
	// removes its finalizer only once the instance is terminated). The adapter now watches Nodes
	// and Events only: no pod event reaches the function.
	startAdapter(t, c, fn.URL, []string{nsWith, "default"}, nodesAndEvents...)
	node0 := localcluster.NodeName(0)
	const claim = "workflows-sig01"
	if err := c.AdoptNode(ctx, claim, node0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.ReleaseNodeClaim(context.Background(), claim) })
	wf, pod, nodeID, err := e.RunningStep(ctx, "sig-node-", scenario.Spec{Namespace: nsWith, Node: node0})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pod.Finalizers, argoworkflow.FinalizerStatus) {
		t.Errorf("Argo %s did not put %s on pod %s (finalizers %v): the case is not exercised", version, argoworkflow.FinalizerStatus, pod.Name, pod.Finalizers)
	}
	time.Sleep(11 * time.Second)
	c.StopKwok()
	// As Karpenter terminates a machine: its NodeClaim is deleted (held by the termination
	// finalizer while the instance goes), then its Node.
	if err := c.DeleteNodeClaim(ctx, claim); err != nil {
		t.Fatal(err)
	}
	if err := e.Kube.CoreV1().Nodes().Delete(ctx, node0, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	var released, completed, gone time.Duration
	if err := waitFor(ctx, 10*time.Second, func() bool {
		if released == 0 || gone == 0 {
			p, err := e.Kube.CoreV1().Pods(nsWith).Get(ctx, pod.Name, metav1.GetOptions{})
			if released == 0 && (err != nil || !slices.Contains(p.Finalizers, argoworkflow.FinalizerStatus)) {
				released = time.Since(t0)
			}
			if gone == 0 && apierrors.IsNotFound(err) {
				gone = time.Since(t0)
			}
		}
		if completed == 0 {
			tr, err := e.Argo.ArgoprojV1alpha1().WorkflowTaskResults(nsWith).Get(ctx, nodeID, metav1.GetOptions{})
			if err == nil && tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true" {
				completed = time.Since(t0)
			}
		}
		return released > 0 && completed > 0 && gone > 0
	}); err != nil {
		t.Fatalf("Node %s deleted: finalizer released after %v, task result %s completed after %v, pod %s gone after %v (0 = not within 10 s)", node0, released, nodeID, completed, pod.Name, gone)
	}
	report = append(report, fmt.Sprintf("Karpenter Node %s deleted (no pod event delivered) → task result completed %.2f s, status finalizer released %.2f s, orphaned pod deleted %.2f s", node0, completed.Seconds(), released.Seconds(), gone.Seconds()))
	if completed > time.Second {
		t.Errorf("repair written %v after the Node delete, want ≤ 1 s", completed)
	}
	var final string
	if err := waitFor(ctx, 60*time.Second, func() bool {
		cur, err := e.Argo.ArgoprojV1alpha1().Workflows(nsWith).Get(ctx, wf.Name, metav1.GetOptions{})
		if err == nil && cur.Status.Phase.Completed() {
			final = fmt.Sprintf("%s %q", cur.Status.Phase, cur.Status.Message)
			return true
		}
		return false
	}); err != nil {
		t.Errorf("workflow %s still Running 60 s after its Node was deleted", wf.Name)
	} else {
		report = append(report, fmt.Sprintf("Node deleted → workflow finished %s: %s (the controller's next reconcile)", final, since(t0)))
		// The step was killed with its machine: it must not be reported as a success.
		if strings.HasPrefix(final, "Succeeded") {
			t.Errorf("workflow %s ended %s after its Node was deleted mid-step", wf.Name, final)
		}
	}
	for _, l := range report {
		t.Log(l)
	}
	if out := os.Getenv("ADH_E2E_SIGNALS_REPORT"); out != "" {
		doc := fmt.Sprintf("Argo %s, measured %s:\n", version, time.Now().UTC().Format("2006-01-02 15:04 MST"))
		for _, l := range report {
			doc += "- " + l + "\n"
		}
		_ = os.WriteFile(out, []byte(doc), 0o644)
	}
}

func waitFor(ctx context.Context, timeout time.Duration, f func() bool) error {
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func since(t time.Time) string { return fmt.Sprintf("%.2f s", time.Since(t).Seconds()) }

func orEmpty(p *corev1.Pod, err error) *corev1.Pod {
	if err != nil || p == nil {
		return &corev1.Pod{}
	}
	return p
}
