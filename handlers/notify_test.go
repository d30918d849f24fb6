package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"function/eventing/eventingtest"
	"function/internal/apifake"
	"function/internal/argoworkflow"
	"function/internal/metrics"
	"function/internal/notify"
	"function/internal/notify/notifytest"
	"function/internal/repair"
)

// notifying makes the handler's Repairer tell e, as package wiring builds it.
func notifying(c *apifake.Cluster, e *notify.Emitter) func(*Options) {
	return func(o *Options) {
		o.Repairer = repair.New(c.Kube, c.Argo, repair.Options{Policy: repair.Policy{Scope: o.Scope, NodeErrorGrace: time.Minute}, Notifier: e})
	}
}

// TestNotificationsOfEachSignal: a Karpenter warning tells one warning per workflow pod it
// concerns; a Karpenter Node deleted under 20 workflow pods, repaired 8 at a time, tells one
// repair per pod, each after its writes; a sink answering 503 changes neither the answer nor
// the repairs, and each failure is counted.
func TestNotificationsOfEachSignal(t *testing.T) {
	spotNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: goneNode}}
	cases := []struct {
		name    string
		cluster func() *apifake.Cluster
		fixture string
		down    bool
		ceType  string
		events  int
		data    notify.Data // of the first event (Workflow, IDs and Time not compared)
	}{
		{
			name: "Karpenter SpotInterrupted on the Node: a warning for its workflow pod",
			cluster: func() *apifake.Cluster {
				wf, tr := gatedWorkflow("etl-a", "etl-a-111")
				return apifake.NewCluster(spotNode, workflowPod("etl-a", "etl-a-111", goneNode, false), wf, tr)
			},
			fixture: "karpenter-event-node-spot-interrupted.json", ceType: notify.TypeWarning, events: 1,
			data: notify.Data{NodeID: "etl-a-111", Pod: "etl-a-111", PodUID: "uid-etl-a", Node: goneNode, Actions: []string{"record-warning"},
				Reason: "SpotInterrupted", Message: "Spot interruption warning was triggered", Signal: "karpenter SpotInterrupted"},
		},
		{
			name:    "Karpenter Node deleted under 20 workflow pods: a repair each",
			cluster: func() *apifake.Cluster { return fullNode(20, false) },
			fixture: "node-delete.json", ceType: notify.TypeRepair, events: 20,
			data: notify.Data{Actions: []string{"complete-task-result", "delete-orphaned-pod"}, Reason: "NodeDeleted", Signal: "node delete event"},
		},
		{
			name:    "the same with the sink answering 503: answered 200, every pod repaired",
			cluster: func() *apifake.Cluster { return fullNode(20, false) },
			fixture: "node-delete.json", down: true, ceType: notify.TypeRepair, events: 20,
			data: notify.Data{Actions: []string{"complete-task-result", "delete-orphaned-pod"}, Reason: "NodeDeleted", Signal: "node delete event"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := notifytest.NewReceiver(t)
			if tc.down {
				sink.AnswerWith(http.StatusServiceUnavailable)
			}
			rec := metrics.New()
			e, err := notify.New(notify.Options{Sink: notify.Sink{URL: sink.URL, From: notify.FromSetting}, Namespace: "argo-disruption-handler", Timeout: 2 * time.Second, Metrics: rec})
			if err != nil {
				t.Fatal(err)
			}
			c := tc.cluster()
			h := handlerOver(c, notifying(c, e), func(o *Options) { o.NodeRepairWorkers = 8 })
			if res := h.Handle(context.Background(), eventingtest.Load(t, tc.fixture)); res != nil {
				t.Fatalf("answer %v, want 200", res)
			}
			got := sink.Received()
			if len(got) != tc.events {
				t.Fatalf("received %d events, want %d", len(got), tc.events)
			}
			ids := map[string]bool{}
			for _, r := range got {
				var d notify.Data
				if err := json.Unmarshal(r.Event.Data(), &d); err != nil {
					t.Fatal(err)
				}
				ids[r.Event.ID()] = true
				if r.Event.Type() != tc.ceType || !slices.Equal(d.Actions, tc.data.Actions) || d.Reason != tc.data.Reason || d.Signal != tc.data.Signal {
					t.Errorf("event %s %s: %+v", r.Event.Type(), r.Event.ID(), d)
				}
				if tc.data.Pod != "" && (d.Pod != tc.data.Pod || d.PodUID != tc.data.PodUID || d.NodeID != tc.data.NodeID || d.Node != tc.data.Node || d.Message != tc.data.Message) {
					t.Errorf("event data %+v, want %+v", d, tc.data)
				}
				// Told after its own writes: the workflow it names holds what it tells.
				wf := mustWF(t, c.Argo, d.Workflow.Name)
				switch tc.ceType {
				case notify.TypeRepair:
					if !repair.HasRecord(wf, d.NodeID) {
						t.Errorf("%s told before its record was written", d.Workflow.Name)
					}
				case notify.TypeWarning:
					if repair.Warnings(wf)[d.Pod].Reason != d.Reason {
						t.Errorf("%s told before its warning was written", d.Workflow.Name)
					}
				}
			}
			if len(ids) != tc.events {
				t.Errorf("%d distinct IDs for %d events", len(ids), tc.events)
			}
			result := map[bool]string{false: metrics.NotificationSent, true: metrics.NotificationFailed}[tc.down]
			if n := notifytest.Counted(t, rec, tc.ceType, result); n != strconv.Itoa(tc.events) {
				t.Errorf("%s counted %s, want %d", result, n, tc.events)
			}
			if tc.ceType == notify.TypeRepair {
				for _, r := range got {
					var d notify.Data
					_ = json.Unmarshal(r.Event.Data(), &d)
					tr, err := c.Argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(context.Background(), d.NodeID, metav1.GetOptions{})
					if err != nil || tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
						t.Errorf("%s not repaired (err %v)", d.NodeID, err)
					}
				}
			}
		})
	}
}
