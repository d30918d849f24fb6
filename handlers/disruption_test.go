package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"

	"function/eventing/eventingtest"
	"function/internal/apifake"
	"function/internal/argoworkflow"
	"function/internal/repair"
)

func TestDisruptionSignals(t *testing.T) {
	const instance = "i-0abc123def4567890"
	spotNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: goneNode}, Spec: corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/" + instance}}
	otherNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-2-9.eu-west-1.compute.internal"}, Spec: corev1.NodeSpec{ProviderID: "aws:///eu-west-1b/i-0fff000111222333a"}}
	cases := []struct {
		name      string
		fixtures  []string
		reason    string // warning recorded on the pod and workflow of etl-a ("" none)
		completed bool   // etl-a's task result completed
	}{
		{"Karpenter SpotInterrupted on the Node: recorded, nothing repaired yet", []string{"karpenter-event-node-spot-interrupted.json"}, "SpotInterrupted", false},
		{"Karpenter DisruptionTerminating on the Node", []string{"karpenter-event-node-disruption-terminating.json"}, "DisruptionTerminating", false},
		{"EC2 spot warning via IntegrationSource: found by providerID", []string{"ec2-spot-interruption-integrationsource.json"}, "SpotInterruptionWarning", false},
		{"AWS Health scheduled change", []string{"aws-health-scheduled-change-triggermesh-events.json"}, "ScheduledChange", false},
		// The message claims the instance terminated, but its Node still exists: the API server
		// does not confirm it, so only the warning is written (the Node's delete event repairs).
		{"EC2 instance terminated while its Node remains: recorded, nothing deleted or completed", []string{"ec2-terminated-triggermesh-sqs.json"}, "InstanceTerminated", false},
		{"informative Karpenter event: nothing", []string{"karpenter-event-unconsolidatable.json"}, "", false},
		{"the same warning twice: one Event", []string{"karpenter-event-node-spot-interrupted.json", "karpenter-event-node-spot-interrupted.json"}, "SpotInterrupted", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wfA, trA := gatedWorkflow("etl-a", "etl-a-111")
			wfC, trC := gatedWorkflow("etl-c", "etl-c-333")
			podA := workflowPod("etl-a", "etl-a-111", goneNode, false)
			podC := workflowPod("etl-c", "etl-c-333", otherNode.Name, false)
			c := apifake.NewCluster(podA, podC, spotNode, otherNode, wfA, trA, wfC, trC)
			kube, argo := c.Kube, c.Argo
			h := handlerOver(c)
			ctx := context.Background()
			for _, f := range tc.fixtures {
				if res := h.Handle(ctx, eventingtest.Load(t, f)); res != nil {
					t.Fatalf("%s: %v", f, res)
				}
			}
			pod, err := kube.CoreV1().Pods(apifake.Namespace).Get(ctx, podA.Name, metav1.GetOptions{})
			if tc.completed {
				// Completed only once the pod of the terminated machine is gone.
				if !apierrors.IsNotFound(err) {
					t.Errorf("pod of the terminated instance still there (err %v)", err)
				}
			} else if w, ok := repair.PodWarning(pod); (tc.reason != "") != ok || w.Reason != tc.reason {
				t.Errorf("pod warning = %+v (%v), want %q", w, ok, tc.reason)
			}
			wf, _ := argo.ArgoprojV1alpha1().Workflows(apifake.Namespace).Get(ctx, "etl-a", metav1.GetOptions{})
			if got := repair.Warnings(wf)[podA.Name].Reason; got != tc.reason {
				t.Errorf("workflow warning = %q, want %q", got, tc.reason)
			}
			evs, _ := kube.CoreV1().Events(apifake.Namespace).List(ctx, metav1.ListOptions{})
			warnings := 0
			for _, e := range evs.Items {
				if e.Reason == repair.WarningEventReason {
					warnings++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.reason != ""]; warnings != want {
				t.Errorf("%d DisruptionWarning events, want %d", warnings, want)
			}
			tr, _ := argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(ctx, "etl-a-111", metav1.GetOptions{})
			if got := tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true"; got != tc.completed {
				t.Errorf("task result completed = %v, want %v", got, tc.completed)
			}
			if rec := repair.Recorded(mustWF(t, argo, "etl-a"))["etl-a-111"]; tc.completed && rec.Reason != "InstanceTerminated" {
				t.Errorf("repair record = %+v", rec)
			}
			podOther, _ := kube.CoreV1().Pods(apifake.Namespace).Get(ctx, podC.Name, metav1.GetOptions{})
			if _, ok := repair.PodWarning(podOther); ok {
				t.Error("pod on another node got the warning")
			}
		})
	}
}

// The reason a warning left on the pod is what the repair records when the pod is then deleted.
func TestWarningReadBackByRepair(t *testing.T) {
	c := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"))
	argo := c.Argo
	h := handlerOver(c)
	e := eventingtest.Load(t, "pod-delete-evicted.json")
	var pod map[string]any
	_ = json.Unmarshal(e.Data(), &pod)
	w := repair.Warning{Source: "karpenter", Reason: "SpotInterrupted", Message: "Spot interruption warning was triggered", Node: goneNode, Time: time.Now().UTC()}
	pod["metadata"].(map[string]any)["annotations"].(map[string]any)[argoworkflow.AnnotationWarning] = w.Marshal()
	e.DataEncoded, _ = json.Marshal(pod)
	if res := h.Handle(context.Background(), e); res != nil {
		t.Fatal(res)
	}
	rec := repair.Recorded(mustWF(t, argo, apifake.WorkflowName))[apifake.NodeID]
	if rec.Reason != "SpotInterrupted" || !strings.Contains(rec.Message, "EvictionByEvictionAPI") {
		t.Fatalf("record = %+v, want SpotInterrupted with the eviction as cause", rec)
	}
}

func mustWF(t *testing.T, argo *argofake.Clientset, name string) *wfv1.Workflow {
	t.Helper()
	wf, err := argo.ArgoprojV1alpha1().Workflows(apifake.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return wf
}

// A Karpenter Event about a pod reads that pod: an API failure is answered 503 (the broker
// retries), never taken for "no workflow pod concerned".
func TestPodDisruptionReadFailureIsRetried(t *testing.T) {
	h, _, _ := newHandler(t, apierrors.NewServiceUnavailable("etcdserver: leader changed"))
	res := h.Handle(context.Background(), eventingtest.Load(t, "karpenter-event-pod-evicted.json"))
	if got := statusOf(res); got != http.StatusServiceUnavailable {
		t.Fatalf("answered %d (%v), want 503", got, res)
	}
}

// Karpenter v1.15 reboots an unhealthy node (a repair action): the pods that stayed through the
// drain lose their containers, and Karpenter's only word is RebootObserved on the NodeClaim. The
// shipped Triggers deliver no pod update, so the Event is what tells the function: a pod the API
// server reports ended without its wait container reporting is repaired at once, its record
// naming the reboot; one the kubelet has not reported yet gets the warning (its deletion or the
// sweep repairs); one whose wait reported is left alone.
func TestRebootObserved(t *testing.T) {
	const node, claim = "kwok-workflows-t9h7r-rayautumn-2-xalnauwv77-3588592375", "workflows-t9h7r"
	lost := func(name string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 137, Reason: "ContainerStatusUnknown", Message: "The container could not be located when the pod was terminated"}}}
	}
	for _, tc := range []struct {
		name      string
		phase     corev1.PodPhase
		wait      corev1.ContainerStatus
		warning   string // on the pod
		completed bool
	}{
		{"containers lost with the reboot, pod Failed: repaired, the reboot recorded", corev1.PodFailed, lost(argoworkflow.WaitContainer), "", true},
		{"pod still Running (the kubelet has not reported): warned", corev1.PodRunning, corev1.ContainerStatus{Name: argoworkflow.WaitContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}, "RebootObserved", false},
		{"pod Failed, its wait container reported (exit 0): nothing", corev1.PodFailed, corev1.ContainerStatus{Name: argoworkflow.WaitContainer, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wf, tr := gatedWorkflow("etl-a", "etl-a-111")
			pod := workflowPod("etl-a", "etl-a-111", node, false)
			pod.Status.Phase = tc.phase
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{lost("main"), tc.wait}
			c := apifake.NewCluster(pod, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, wf, tr)
			claimObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
				"metadata": map[string]any{"name": claim}, "status": map[string]any{"nodeName": node}}}
			h := handlerOver(c, func(o *Options) { o.Finder.Dynamic = nodeClaims(claimObj) })
			ctx := context.Background()
			if res := h.Handle(ctx, eventingtest.Load(t, "karpenter-kwok-nodeclaim-reboot-observed.json")); res != nil {
				t.Fatal(res)
			}
			live, err := c.Kube.CoreV1().Pods(apifake.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if w, _ := repair.PodWarning(live); w.Reason != tc.warning {
				t.Errorf("pod warning %q, want %q", w.Reason, tc.warning)
			}
			trNow, _ := c.Argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(ctx, "etl-a-111", metav1.GetOptions{})
			if done := trNow.Labels[argoworkflow.LabelReportOutputsCompleted] == "true"; done != tc.completed {
				t.Errorf("task result completed = %v, want %v", done, tc.completed)
			}
			rec, ok := repair.Recorded(mustWF(t, c.Argo, "etl-a"))["etl-a-111"]
			if ok != tc.completed || (ok && rec.Reason != "RebootObserved") {
				t.Errorf("record %+v (%v), want reason RebootObserved only when repaired", rec, ok)
			}
		})
	}
}
