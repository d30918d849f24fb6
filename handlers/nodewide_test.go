package handlers

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"function/eventing/eventingtest"
	"function/internal/apifake"
	"function/internal/argoworkflow"
	"function/internal/repair"
)

// fullNode builds n one-step workflows whose pods run on goneNode, each gated on its task result.
func fullNode(n int, finalizer bool) *apifake.Cluster {
	var objs []runtime.Object
	for i := range n {
		wf := fmt.Sprintf("step-%03d", i)
		node := fmt.Sprintf("%s-%d", wf, 1000+i)
		w, tr := gatedWorkflow(wf, node)
		p := workflowPod(wf, node, goneNode, false)
		if finalizer {
			p.Finalizers = []string{argoworkflow.FinalizerStatus}
		}
		objs = append(objs, p, w, tr)
	}
	return apifake.NewCluster(objs...)
}

// A Karpenter Node delete with a full node behind it: every pod repaired in one delivery, with at
// most six calls per pod (seven when Argo's status finalizer holds it): the Workflow and the pod
// read again before the completion (rules 3 and 12), no read of a task result; each workflow
// records the repair; a re-delivery finds nothing left to do.
func TestNodeWideRepairOfAFullNode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		finalizer bool
		perPod    int
	}{
		{"pods without Argo's status finalizer", false, 6},
		{"pods held by Argo's status finalizer", true, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const pods = 110
			calls := fullNode(pods, tc.finalizer)
			kube, argo := calls.Kube, calls.Argo
			h := handlerOver(calls, func(o *Options) { o.NodeRepairWorkers = 8 })
			ctx := context.Background()
			if res := h.Handle(ctx, eventingtest.Load(t, "node-delete.json")); res != nil {
				t.Fatal(res)
			}
			first := calls.Count("")
			reads := map[string]int{}
			for _, read := range []string{"get workflowtaskresults"} {
				reads[read] = calls.Count(read)
			}
			for i := range pods {
				wf := fmt.Sprintf("step-%03d", i)
				tr, err := argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(ctx, fmt.Sprintf("%s-%d", wf, 1000+i), metav1.GetOptions{})
				if err != nil || tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
					t.Fatalf("%s: task result not completed (%v)", wf, err)
				}
				if rec := repair.Recorded(mustWF(t, argo, wf))[tr.Name]; rec.Reason != "NodeDeleted" {
					t.Fatalf("%s: record = %+v", wf, rec)
				}
			}
			if left, _ := kube.CoreV1().Pods(apifake.Namespace).List(ctx, metav1.ListOptions{}); len(left.Items) != 0 {
				t.Fatalf("%d pods left on the gone node", len(left.Items))
			}
			// The constant part: the handler's Node read, the pod LIST, the workers' Node reads.
			if perPod := float64(first-12) / pods; perPod > float64(tc.perPod) {
				t.Errorf("%.2f API calls per pod (%d in all), want at most %d", perPod, first, tc.perPod)
			}
			for read, n := range reads {
				if n != 0 {
					t.Errorf("%d × %s on the node-wide path", n, read)
				}
			}
			before := calls.Count("")
			if res := h.Handle(ctx, eventingtest.Load(t, "node-delete.json")); res != nil {
				t.Fatal(res)
			}
			if again := calls.Count("") - before; again > 2 {
				t.Errorf("re-delivery cost %d calls, want the Node read and the pod LIST only", again)
			}
		})
	}
}

// A node whose pods cannot all be repaired before the event's deadline: no pod is started once
// less than the reserve is left, the event is answered 503, and the re-delivery goes on with the
// pods still on the LIST — none is repaired twice.
func TestNodeWideRepairHandsOnWhatTheDeadlineLeaves(t *testing.T) {
	const pods = 60
	calls := fullNode(pods, false)
	kube, argo := calls.Kube, calls.Argo
	slow := func(k8stesting.Action) (bool, runtime.Object, error) {
		time.Sleep(40 * time.Millisecond)
		return false, nil, nil
	}
	argo.PrependReactor("patch", "workflowtaskresults", slow)
	h := handlerOver(calls, func(o *Options) { o.NodeRepairWorkers, o.Timeout = 2, nodeWideReserve+300*time.Millisecond })
	ctx := context.Background()
	res := h.Handle(ctx, eventingtest.Load(t, "node-delete.json"))
	if got := statusOf(res); got != http.StatusServiceUnavailable {
		t.Fatalf("first delivery answered %d (%v), want 503", got, res)
	}
	left, _ := kube.CoreV1().Pods(apifake.Namespace).List(ctx, metav1.ListOptions{})
	if n := len(left.Items); n == 0 || n == pods {
		t.Fatalf("%d pods left after the first delivery, want some repaired and some handed on", n)
	}
	h = handlerOver(calls, func(o *Options) { o.NodeRepairWorkers, o.Timeout = 2, time.Minute })
	if res := h.Handle(ctx, eventingtest.Load(t, "node-delete.json")); res != nil {
		t.Fatalf("re-delivery: %v", res)
	}
	if left, _ := kube.CoreV1().Pods(apifake.Namespace).List(ctx, metav1.ListOptions{}); len(left.Items) != 0 {
		t.Fatalf("%d pods left after the re-delivery", len(left.Items))
	}
	if n := calls.Count("patch workflowtaskresults"); n != pods {
		t.Errorf("%d task-result patches for %d pods: some were repaired twice, or not at all", n, pods)
	}
}

// The listed pod is not taken on trust: a write the API server refuses on its preconditions
// (the pod changed since the LIST) undoes the completion before anything else and sends the pod
// down the full path, which reads everything and decides; a pod re-created under the name is
// never deleted.
func TestNodeWideRepairOnAPodThatChangedSinceTheList(t *testing.T) {
	for _, tc := range []struct {
		name       string
		refuse     error // the answer to the first finalizer release
		recreated  bool  // the refusal is a new pod under the name
		wantGone   bool
		wantTRDone bool
	}{
		{"updated since the list (409): repaired by the full path", apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", nil), false, true, true},
		{"re-created under the name: left to the new incarnation", apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", nil), true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fullNode(1, true)
			kube, argo := c.Kube, c.Argo
			refused := false
			kube.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				if refused {
					return false, nil, nil
				}
				refused = true
				if tc.recreated {
					gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
					pod := workflowPod("step-000", "step-000-1000", "ip-10-0-9-9.eu-west-1.compute.internal", false)
					pod.UID = "uid-step-000-new"
					_ = kube.Tracker().Update(gvr, pod, apifake.Namespace)
				}
				return true, nil, tc.refuse
			})
			h := handlerOver(c)
			ctx := context.Background()
			_ = h.Handle(ctx, eventingtest.Load(t, "node-delete.json"))
			tr, _ := argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(ctx, "step-000-1000", metav1.GetOptions{})
			if got := tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true"; got != tc.wantTRDone {
				t.Errorf("task result completed = %v, want %v", got, tc.wantTRDone)
			}
			_, err := kube.CoreV1().Pods(apifake.Namespace).Get(ctx, workflowPod("step-000", "step-000-1000", goneNode, false).Name, metav1.GetOptions{})
			if gone := apierrors.IsNotFound(err); gone != tc.wantGone {
				t.Errorf("pod gone = %v, want %v (err %v)", gone, tc.wantGone, err)
			}
		})
	}
}
