package handlers

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/eventing/eventingtest"
	"function/internal/apifake"
	"function/internal/argoworkflow"
	"function/internal/repair"
)

const goneNode = "ip-10-0-1-23.eu-west-1.compute.internal"

// workflowPod is the pod of node nodeID of workflow wf, named as Argo's v1 format names it (the
// node ID; gatedWorkflow says so).
func workflowPod(wf, nodeID, host string, terminating bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: nodeID, Namespace: apifake.Namespace, UID: types.UID("uid-" + wf), ResourceVersion: "3",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf, UID: types.UID("wfuid-" + wf)}},
			Labels:          map[string]string{argoworkflow.LabelWorkflow: wf},
			Annotations:     map[string]string{argoworkflow.AnnotationNodeID: nodeID}},
		Spec:   corev1.PodSpec{NodeName: host},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if terminating {
		// Force-deleted (PodGC), held by Argo's status finalizer alone.
		now, zero := metav1.Now(), int64(0)
		p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &zero
		p.Finalizers = []string{argoworkflow.FinalizerStatus}
	}
	return p
}

func gatedWorkflow(name, nodeID string) (*wfv1.Workflow, *wfv1.WorkflowTaskResult) {
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: apifake.Namespace, UID: types.UID("wfuid-" + name), ResourceVersion: "9",
			Annotations: map[string]string{argoworkflow.AnnotationPodNameFormat: "v1"}}, // pods named by node ID
		Status: wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning, TaskResultsCompletionStatus: map[string]bool{nodeID: false}},
	}
	tr := &wfv1.WorkflowTaskResult{ObjectMeta: metav1.ObjectMeta{Name: nodeID, Namespace: apifake.Namespace, ResourceVersion: "5",
		Labels:          map[string]string{argoworkflow.LabelWorkflow: name, argoworkflow.LabelReportOutputsCompleted: "false"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: name, UID: wf.UID}}}}
	return wf, tr
}

// A Node delete event repairs every workflow pod still bound to it. A pod held Terminating by
// Argo's status finalizer is released (and so gone) and its task result completed. A pod still
// Running there is deleted when the event proves the machine terminated (a Karpenter-managed Node,
// a NodeClaim), then its task result completed; after a plain Node delete (a live kubelet could
// register the Node again) it is left for PodGC, since completing its task result while it exists
// could let the controller read PodGC's Failed status as success. Pods on other Nodes are never
// touched. A delete event for a name whose Node exists now (a late re-delivery after a new
// machine took the name, a NodeClaim whose Node remains) touches nothing at all.
// liveClaim is the NodeClaim the node-delete fixture's Node names as its owner, still there and
// not being deleted; deletingClaim the same being deleted by Karpenter.
func liveClaim() *unstructured.Unstructured {
	c := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
		"metadata": map[string]any{"name": "workflows-x7k2p"}, "status": map[string]any{"nodeName": goneNode}}}
	return c
}

func deletingClaim() *unstructured.Unstructured {
	c := liveClaim()
	now := metav1.Now()
	c.SetDeletionTimestamp(&now)
	c.SetFinalizers([]string{"karpenter.sh/termination"})
	return c
}

func TestNodeGoneRepairsItsPods(t *testing.T) {
	cases := []struct {
		fixture    string
		nodeExists bool   // a Node of the event's name exists on the cluster
		runningTR  string // etl-a: pod still Running on the gone node
		runningUp  bool   // etl-a's pod still exists
		claim      func() *unstructured.Unstructured
	}{
		{"node-delete-unmanaged.json", false, "false", true, nil},
		{"node-ref-delete.json", false, "false", true, nil},
		{"node-delete.json", false, "true", false, nil},
		{"nodeclaim-delete.json", false, "true", false, nil},
		{"node-delete.json", true, "false", true, nil},
		{"nodeclaim-delete.json", true, "false", true, nil},
		// The Node's finalizer removed by hand: its NodeClaim still exists, not being deleted, so
		// the machine may run; the Running pod is left to PodGC.
		{"node-delete.json", false, "false", true, liveClaim},
		// Karpenter terminating the machine: its NodeClaim is being deleted.
		{"node-delete.json", false, "true", false, deletingClaim},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s node exists=%v", tc.fixture, tc.nodeExists), func(t *testing.T) {
			wfA, trA := gatedWorkflow("etl-a", "etl-a-111")
			wfB, trB := gatedWorkflow("etl-b", "etl-b-222")
			wfC, trC := gatedWorkflow("etl-c", "etl-c-333")
			podA := workflowPod("etl-a", "etl-a-111", goneNode, false)
			podB := workflowPod("etl-b", "etl-b-222", goneNode, true)
			podC := workflowPod("etl-c", "etl-c-333", "ip-10-0-2-9.eu-west-1.compute.internal", false)
			live := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-2-9.eu-west-1.compute.internal"}}
			c := apifake.NewCluster(podA, podB, podC, live, wfA, trA, wfB, trB, wfC, trC)
			kube, argo := c.Kube, c.Argo
			if tc.nodeExists {
				_ = kube.Tracker().Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: goneNode, UID: "node-uid-new"}})
			}
			h := handlerOver(c)
			if tc.claim != nil {
				h = handlerOver(c, func(o *Options) { o.Finder.Dynamic = nodeClaims(tc.claim()) })
			}
			ctx := context.Background()
			// Twice: a re-delivery writes nothing more and fails nothing.
			for range 2 {
				if res := h.Handle(ctx, eventingtest.Load(t, tc.fixture)); res != nil {
					t.Fatalf("%s: %v", tc.fixture, res)
				}
			}
			for _, c := range []struct {
				node string
				want string
			}{{"etl-a-111", tc.runningTR}, {"etl-b-222", map[bool]string{false: "true", true: "false"}[tc.nodeExists]}, {"etl-c-333", "false"}} {
				tr, err := argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(ctx, c.node, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if got := tr.Labels[argoworkflow.LabelReportOutputsCompleted]; got != c.want {
					t.Errorf("task result %s = %q, want %q", c.node, got, c.want)
				}
			}
			if _, err := kube.CoreV1().Pods(apifake.Namespace).Get(ctx, podA.Name, metav1.GetOptions{}); (err == nil) != tc.runningUp {
				t.Errorf("pod on the gone node exists = %v, want %v", err == nil, tc.runningUp)
			}
			if _, err := kube.CoreV1().Pods(apifake.Namespace).Get(ctx, podC.Name, metav1.GetOptions{}); err != nil {
				t.Errorf("pod on a live node: %v", err)
			}
			b, _ := kube.CoreV1().Pods(apifake.Namespace).Get(ctx, podB.Name, metav1.GetOptions{})
			wf, _ := argo.ArgoprojV1alpha1().Workflows(apifake.Namespace).Get(ctx, "etl-b", metav1.GetOptions{})
			if tc.nodeExists {
				if b == nil || len(b.Finalizers) != 1 || len(repair.Recorded(wf)) != 0 {
					t.Errorf("a Node of that name exists, yet pod %v or records %v were touched", b, repair.Recorded(wf))
				}
				return
			}
			if b != nil && len(b.Finalizers) != 0 {
				t.Errorf("status finalizer of the pod on the gone node kept: %v", b.Finalizers)
			}
			if rec := repair.Recorded(wf)["etl-b-222"]; rec.Reason != "NodeDeleted" {
				t.Errorf("record = %+v", rec)
			}
		})
	}
}
