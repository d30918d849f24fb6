package handlers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"function/eventing/eventingtest"
	"function/internal/apifake"
	"function/internal/argoworkflow"
	"function/internal/lookup"
	"function/internal/repair"
)

// An EC2 state message names an instance; its Node is found through the NodeClaim (which
// outlives the Node while Karpenter terminates it). Where the Node exists, the pods get the
// warning and nothing else; a terminated instance whose Node is gone is repaired at once, its
// record naming the announced reason, with no warning written first; a machine only shutting down
// costs nothing, since its terminated message follows.
func TestEC2StateMessages(t *testing.T) {
	const instance = "i-0abc123def4567890"
	for _, tc := range []struct {
		name       string
		state      string
		nodeExists bool
		warning    string // recorded on the pod and the workflow ("" none)
		repaired   bool
	}{
		{"shutting-down, Node still there: nothing (its terminated message follows)", "shutting-down", true, "", false},
		{"shutting-down, Node gone: nothing (its terminated message follows)", "shutting-down", false, "", false},
		{"terminated, Node still there: warned (its delete repairs)", "terminated", true, "InstanceTerminated", false},
		{"terminated, Node gone: repaired, the reason in the record", "terminated", false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wf, tr := gatedWorkflow("etl-a", "etl-a-111")
			pod := workflowPod("etl-a", "etl-a-111", goneNode, false)
			objs := []runtime.Object{pod}
			if tc.nodeExists {
				objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: goneNode}, Spec: corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/" + instance}})
			}
			c := apifake.NewCluster(append(objs, wf, tr)...)
			c.AddNodeClaims(apifake.NodeClaim{Name: "workflows-abcde", ProviderID: "aws:///eu-west-1a/" + instance, NodeName: goneNode})
			kube, argo := c.Kube, c.Argo
			h := handlerOver(c, func(o *Options) { o.Finder = lookup.Finder{Kube: kube, Tables: lookup.RESTTables{Client: c.REST()}} })
			e := eventingtest.Load(t, "ec2-terminated-triggermesh-sqs.json")
			e.DataEncoded = []byte(strings.Replace(string(e.Data()), `"state": "terminated"`, `"state": "`+tc.state+`"`, 1))
			ctx := context.Background()
			if res := h.Handle(ctx, e); res != nil {
				t.Fatal(res)
			}
			live, err := kube.CoreV1().Pods(apifake.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
			if gone := apierrors.IsNotFound(err); gone != tc.repaired {
				t.Errorf("pod gone = %v, want %v", gone, tc.repaired)
			}
			if w, _ := repair.PodWarning(live); !tc.repaired && w.Reason != tc.warning {
				t.Errorf("pod warning %q, want %q", w.Reason, tc.warning)
			}
			got := mustWF(t, argo, "etl-a")
			if w := repair.Warnings(got)[pod.Name].Reason; w != tc.warning {
				t.Errorf("workflow warning %q, want %q", w, tc.warning)
			}
			trNow, _ := argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(ctx, "etl-a-111", metav1.GetOptions{})
			if done := trNow.Labels[argoworkflow.LabelReportOutputsCompleted] == "true"; done != tc.repaired {
				t.Errorf("task result completed = %v, want %v", done, tc.repaired)
			}
			if rec := repair.Recorded(got)["etl-a-111"]; tc.repaired && rec.Reason != "InstanceTerminated" {
				t.Errorf("record %+v, want reason InstanceTerminated", rec)
			}
		})
	}
}

// EC2 announces one instance's end twice, `shutting-down` then `terminated` (`stopping` then
// `stopped`): the pair costs no more API calls than its last message alone (plus 10 %), whether
// the Node is still there or already gone, with the same outcome.
func TestEC2StateSequenceDoesNotDoubleTheWork(t *testing.T) {
	const instance, pods = "i-0abc123def4567890", 20
	for _, tc := range []struct {
		name       string
		states     []string
		nodeExists bool
	}{
		{"shutting-down then terminated, Node gone", []string{"shutting-down", "terminated"}, false},
		{"shutting-down then terminated, Node still there", []string{"shutting-down", "terminated"}, true},
		{"stopping then stopped, Node gone", []string{"stopping", "stopped"}, false},
		{"stopping then stopped, Node still there", []string{"stopping", "stopped"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(states []string) (calls int, c *apifake.Cluster) {
				c = fullNode(pods, false)
				if tc.nodeExists {
					_ = c.Kube.Tracker().Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: goneNode}, Spec: corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/" + instance}})
				}
				c.AddNodeClaims(apifake.NodeClaim{Name: "workflows-abcde", ProviderID: "aws:///eu-west-1a/" + instance, NodeName: goneNode})
				h := handlerOver(c, func(o *Options) { o.Finder = lookup.Finder{Kube: c.Kube, Tables: lookup.RESTTables{Client: c.REST()}} })
				for _, state := range states {
					e := eventingtest.Load(t, "ec2-terminated-triggermesh-sqs.json")
					e.DataEncoded = []byte(strings.Replace(string(e.Data()), `"state": "terminated"`, `"state": "`+state+`"`, 1))
					if res := h.Handle(context.Background(), e); res != nil {
						t.Fatalf("%s: %v", state, res)
					}
				}
				return c.Count(""), c
			}
			alone, _ := run(tc.states[1:])
			both, c := run(tc.states)
			if float64(both) > 1.1*float64(alone) {
				t.Errorf("%d API calls for %v, %d for %q alone: want at most +10 %%", both, tc.states, alone, tc.states[1])
			}
			left, _ := c.Kube.CoreV1().Pods(apifake.Namespace).List(context.Background(), metav1.ListOptions{})
			if repaired := len(left.Items) == 0; repaired == tc.nodeExists {
				t.Errorf("%d of %d pods left, want the pods repaired only when the Node is gone", len(left.Items), pods)
			}
		})
	}
}
