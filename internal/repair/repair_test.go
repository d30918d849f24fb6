package repair

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/eventing"
	"function/internal/apifake"
	"function/internal/argoworkflow"
)

var ctx = context.Background()

func eventsIn(t *testing.T, c *apifake.Cluster) []corev1.Event {
	t.Helper()
	l, err := c.Kube.CoreV1().Events(apifake.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// taskResultCompleted checks ladder step 1/2's outcome: the label the controller reads, our
// marker, and the record on the workflow with its Event.
func taskResultCompleted(reason string) func(*testing.T, *apifake.Cluster) {
	return func(t *testing.T, c *apifake.Cluster) {
		tr := c.GetTaskResult(t)
		if tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
			t.Errorf("task result label = %q", tr.Labels[argoworkflow.LabelReportOutputsCompleted])
		}
		if tr.Labels[argoworkflow.LabelWorkflow] != apifake.WorkflowName || len(tr.OwnerReferences) != 1 || tr.OwnerReferences[0].UID != apifake.WorkflowUID {
			t.Errorf("task result lost its links: %v %v", tr.Labels, tr.OwnerReferences)
		}
		if _, err := Parse(tr.Annotations[argoworkflow.AnnotationRepaired]); err != nil {
			t.Errorf("no repair marker: %v", err)
		}
		recorded(reason)(t, c)
	}
}

func recorded(reason string) func(*testing.T, *apifake.Cluster) {
	return func(t *testing.T, c *apifake.Cluster) {
		wf := c.GetWorkflow(t)
		rec, ok := Recorded(wf)[apifake.NodeID]
		if !ok {
			t.Fatalf("no record on workflow: %v", wf.Annotations)
		}
		if rec.Reason != reason || rec.Pod != apifake.PodName {
			t.Errorf("record = %+v, want reason %q", rec, reason)
		}
		evs := eventsIn(t, c)
		if len(evs) != 1 || evs[0].Reason != EventReason || evs[0].InvolvedObject.Name != apifake.WorkflowName || !strings.Contains(evs[0].Message, reason) {
			t.Errorf("events = %+v", evs)
		}
		if wf.Status.Phase != wfv1.WorkflowRunning || wf.Labels[argoworkflow.LabelCompleted] != "" {
			t.Errorf("workflow phase or completed label touched: %s %v", wf.Status.Phase, wf.Labels)
		}
	}
}

func nothingWritten(t *testing.T, c *apifake.Cluster) {
	if w := c.Writes(); len(w) != 0 {
		t.Errorf("writes = %v, want none", w)
	}
}

func TestRepairLadder(t *testing.T) {
	now := apifake.T0.Add(6*time.Minute + 5*time.Second)
	late := apifake.T0.Add(8 * time.Minute)
	cases := []struct {
		name     string
		objs     []runtime.Object
		target   Target
		now      time.Time
		dryRun   bool
		failNext map[string]error
		want     []Action
		record   bool
		skip     string // substring of Plan.Skip when nothing is done
		calls    int    // API calls made, 0 = not checked
		check    func(*testing.T, *apifake.Cluster)
	}{
		{
			name: "evicted pod gone, task result incomplete: complete it (step 1)",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, target: target(apifake.Evicted, apifake.Terminating, apifake.Failed),
			want: []Action{CompleteTaskResult}, record: true, calls: 7,
			check: taskResultCompleted("EvictionByEvictionAPI"),
		},
		{
			name: "force-deleted pod, no reason known",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, target: target(),
			want: []Action{CompleteTaskResult}, record: true,
			check: taskResultCompleted(UnknownReason),
		},
		{
			name: "pod gone, task result without the label while the map waits: complete it",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("")}, target: target(),
			want: []Action{CompleteTaskResult}, record: true,
			check: taskResultCompleted(UnknownReason),
		},
		{
			name: "pod gone, task result already complete: nothing",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("true")}, target: target(),
			skip: "nothing to repair", calls: 3, check: nothingWritten,
		},
		{
			name: "task result missing, map waits, node marked Error: create it complete (step 2)",
			objs: []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodeError), apifake.WithNodeMessage("pod deleted"))}, target: target(apifake.Evicted),
			want: []Action{CreateTaskResult}, record: true,
			check: taskResultCompleted("EvictionByEvictionAPI"),
		},
		{
			name: "task result missing, v3.7 node taskResultSynced=false: create it",
			objs: []runtime.Object{apifake.Workflow(apifake.With37Synced, apifake.WithNodePhase(wfv1.NodeError), apifake.WithNodeMessage("pod deleted"))}, target: target(),
			want: []Action{CreateTaskResult}, record: true,
			check: taskResultCompleted(UnknownReason),
		},
		{
			name: "task result missing, nothing waits on it: nothing",
			objs: []runtime.Object{apifake.Workflow(func(wf *wfv1.Workflow) { wf.Status.TaskResultsCompletionStatus = nil })}, target: target(),
			skip: "nothing to repair", check: nothingWritten,
		},
		{
			name: "compressed nodes: task result completed, nodes never written",
			objs: []runtime.Object{apifake.Workflow(apifake.WithCompressedNodes), apifake.TaskResult("false")}, target: target(),
			want: []Action{CompleteTaskResult}, record: true,
			check: func(t *testing.T, c *apifake.Cluster) {
				taskResultCompleted(UnknownReason)(t, c)
				if wf := c.GetWorkflow(t); len(wf.Status.Nodes) != 0 || wf.Status.CompressedNodes == "" {
					t.Errorf("compressed workflow nodes changed: %d inline", len(wf.Status.Nodes))
				}
			},
		},
		{
			name: "offloaded nodes: task result completed",
			objs: []runtime.Object{apifake.Workflow(apifake.WithOffloadedNodes), apifake.TaskResult("false")}, target: target(),
			want: []Action{CompleteTaskResult}, record: true,
			check: taskResultCompleted(UnknownReason),
		},
		{
			name: "workflow finished: one read, nothing else",
			objs: []runtime.Object{apifake.Workflow(apifake.WithPhase(wfv1.WorkflowFailed)), apifake.TaskResult("false")}, target: target(),
			skip: "workflow already Failed", calls: 1, check: nothingWritten,
		},
		{
			name: "workflow being deleted",
			objs: []runtime.Object{apifake.Workflow(apifake.WithDeletion()), apifake.TaskResult("false")}, target: target(),
			skip: "being deleted", calls: 1, check: nothingWritten,
		},
		{
			name: "workflow gone",
			objs: []runtime.Object{apifake.TaskResult("false")}, target: target(),
			skip: "workflow not found", calls: 1, check: nothingWritten,
		},
		{
			name: "workflow of another controller instance",
			objs: []runtime.Object{apifake.Workflow(apifake.WithLabel(argoworkflow.LabelInstanceID, "team-b")), apifake.TaskResult("false")}, target: target(),
			skip: "instance-id", calls: 1, check: nothingWritten,
		},
		{
			name:   "workflow in an excluded namespace",
			objs:   []runtime.Object{apifake.Workflow(func(wf *wfv1.Workflow) { wf.Namespace = "kube-system" })},
			target: func() Target { t := target(); t.Namespace = "kube-system"; return t }(),
			skip:   "out of scope", check: nothingWritten,
		},
		{
			name: "pod terminating on a live node: wait, its wait container may still report",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Terminating, apifake.Evicted), apifake.HostNode()}, target: target(apifake.Terminating, apifake.Evicted),
			skip: "may still report", calls: 4, check: nothingWritten,
		},
		{
			name: "pod alive (an update event of a healthy pod)",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(), apifake.HostNode()}, target: target(),
			skip: "pod is running", check: nothingWritten,
		},
		{
			name: "pod re-created under the same name and running: leave it",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Reincarnated), apifake.HostNode()}, target: target(),
			skip: "re-created under the same name", calls: 2, check: nothingWritten,
		},
		{
			name: "pod finished without its wait container reporting (kubelet eviction): complete",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Failed), apifake.HostNode()}, target: target(apifake.Failed),
			want: []Action{CompleteTaskResult}, record: true,
			check: taskResultCompleted(UnknownReason),
		},
		{
			name: "pod force-deleted on a gone node, held only by the status finalizer: release it (gone at once), complete (steps 3+1)",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.ForceDeleted, apifake.WithStatusFinalizer)}, target: target(apifake.ForceDeleted, apifake.WithStatusFinalizer),
			want: []Action{ReleaseStatusFinalizer, CompleteTaskResult}, record: true,
			check: all(podGone, taskResultCompleted(UnknownReason)),
		},
		{
			name: "pod set Failed by PodGC, containers never ended, still there: wait for its deletion",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Terminating, apifake.MarkedFailedByPodGC)}, target: target(apifake.Terminating, apifake.MarkedFailedByPodGC),
			skip: "waiting for its deletion", check: nothingWritten,
		},
		{
			name: "pod set Failed by PodGC, held by the status finalizer and another on a gone node: release ours, wait",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Terminating, apifake.MarkedFailedByPodGC, apifake.WithFinalizer)}, target: target(apifake.Terminating, apifake.MarkedFailedByPodGC, apifake.WithFinalizer),
			want: []Action{ReleaseStatusFinalizer}, record: true,
			check: taskResultLabel("false"),
		},
		{
			name: "machine terminated, pod still Running with the status finalizer: complete (its status reads as running), release, delete it",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.WithStatusFinalizer)}, target: machineGone(target(apifake.WithStatusFinalizer)),
			want: []Action{CompleteTaskResult, ReleaseStatusFinalizer, DeleteOrphanedPod}, record: true,
			check: all(podGone, taskResultCompleted("NodeDeleted")),
		},
		{
			name: "machine terminated, pod Running without finalizer: complete, delete it",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod()}, target: machineGone(target()),
			want: []Action{CompleteTaskResult, DeleteOrphanedPod}, record: true,
			check: all(podGone, taskResultCompleted("NodeDeleted")),
		},
		{
			name: "machine terminated, pod set Failed by PodGC (containers not ended): delete it; the gate waits for the controller",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.MarkedFailedByPodGC)}, target: machineGone(target(apifake.MarkedFailedByPodGC)),
			want: []Action{DeleteOrphanedPod}, record: true,
			check: all(podGone, taskResultLabel("false")),
		},
		{
			name: "pod gone, its last status Failed by PodGC, the controller marked the node Error: complete",
			objs: []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodeError), apifake.WithNodeMessage("pod deleted")), apifake.TaskResult("false")}, target: deleted(target(apifake.ForceDeleted, apifake.MarkedFailedByPodGC)),
			want: []Action{CompleteTaskResult}, record: true, check: taskResultCompleted("DeletionByPodGC"),
		},
		{
			name: "pod gone, its last status Failed by PodGC, node still Running: wait for the controller, nothing written",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, target: deleted(target(apifake.ForceDeleted, apifake.MarkedFailedByPodGC)),
			skip: "waiting for the controller to see the pod go", check: nothingWritten,
		},
		{
			name: "pod gone, its last status Failed by PodGC, the controller marked the node Succeeded: left alone",
			objs: []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodeSucceeded)), apifake.TaskResult("false")}, target: deleted(target(apifake.ForceDeleted, apifake.MarkedFailedByPodGC)),
			skip: "left to the controller", check: nothingWritten,
		},
		{
			name: "pod gone, its last status Failed by PodGC, offloaded nodes: left to the controller and the sweep",
			objs: []runtime.Object{apifake.Workflow(apifake.WithOffloadedNodes), apifake.TaskResult("false")}, target: deleted(target(apifake.ForceDeleted, apifake.MarkedFailedByPodGC)),
			skip: "offloaded", check: nothingWritten,
		},
		{
			name: "pod force-deleted by PodGC on a gone node, held by the status finalizer: release it; the gate waits for the controller",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.ForceDeleted, apifake.MarkedFailedByPodGC, apifake.WithStatusFinalizer)}, target: target(apifake.ForceDeleted, apifake.MarkedFailedByPodGC, apifake.WithStatusFinalizer),
			want: []Action{ReleaseStatusFinalizer}, record: true,
			check: all(podGone, taskResultLabel("false")),
		},
		{
			name: "machine-terminated signal while the pod's Node exists (late, or about an earlier Node of that name): nothing",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.WithStatusFinalizer), apifake.HostNode()}, target: machineGone(target(apifake.WithStatusFinalizer)),
			skip: "pod is running", check: nothingWritten,
		},
		{
			name: "machine-terminated signal for a node other than the pod's: nothing",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod()}, target: func() Target {
				t := machineGone(target())
				t.NodeName = "ip-10-0-9-9.eu-west-1.compute.internal"
				return t
			}(),
			skip: "not to", check: nothingWritten,
		},
		{
			name: "a pod name that never existed, carrying a running node's node-id: not ours, no call",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(), apifake.HostNode()}, target: deleted(func() Target { t := target(); t.PodName = "ghost-pod"; return t }()),
			skip: "not ours", calls: 0, check: nothingWritten,
		},
		{
			name: "workflow deleted and submitted again under the same name: the old pod's late delete is not ours",
			objs: []runtime.Object{apifake.Workflow(apifake.WithUID("a5e0f3d2-new")), apifake.TaskResultOf("a5e0f3d2-new", "false")}, target: target(),
			skip: "not ours", check: nothingWritten,
		},
		{
			name: "workflow re-created, the old pod's late delete event: four-call test refused, full path finds it not ours",
			objs: []runtime.Object{apifake.Workflow(apifake.WithUID("a5e0f3d2-new")), apifake.TaskResultOf("a5e0f3d2-new", "false")}, target: deleted(target()),
			skip: "not ours", check: nothingWritten,
		},
		{
			name: "workflow re-created and finished: no late record for the predecessor's pod",
			objs: []runtime.Object{apifake.Workflow(apifake.WithUID("a5e0f3d2-new"), apifake.WithPhase(wfv1.WorkflowFailed), apifake.WithNodePhase(wfv1.NodeError), apifake.WithNodeMessage("pod deleted"))}, target: deleted(target(apifake.Evicted)),
			skip: "not ours", check: nothingWritten,
		},
		{
			name: "task result owned by another workflow of the same name: not ours",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResultOf("a5e0f3d2-old", "false")}, target: target(),
			skip: "not ours", check: nothingWritten,
		},
		{
			name: "pod present under the name but owned by another workflow: not ours",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Failed, func(p *corev1.Pod) { p.OwnerReferences[0].UID = "a5e0f3d2-old" })}, target: target(apifake.Failed, func(p *corev1.Pod) { p.OwnerReferences[0].UID = "a5e0f3d2-old" }),
			skip: "not ours", check: nothingWritten,
		},
		{
			name: "node id not in the workflow at all: not ours",
			objs: []runtime.Object{apifake.Workflow(func(wf *wfv1.Workflow) {
				delete(wf.Status.Nodes, apifake.NodeID)
				wf.Status.TaskResultsCompletionStatus = nil
			}), apifake.TaskResult("false")}, target: target(),
			skip: "has no node", check: nothingWritten,
		},
		{
			name: "pod created but not yet scheduled, a forged delete with its UID: it can still run and report",
			objs: []runtime.Object{apifake.Workflow(), apifake.Pod(func(p *corev1.Pod) { p.Spec.NodeName = ""; p.Status = corev1.PodStatus{Phase: corev1.PodPending} })}, target: deleted(target()),
			skip: "pod is running", check: nothingWritten,
		},
		{
			name:   "pod evicted before its main container started, gone, node Pending (Argo 4 failedPodRestart re-creates it): nothing",
			objs:   []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodePending), apifake.WithNodeMessage("Pod auto-restarting due to Evicted: The node was low on resource: memory.")), apifake.TaskResult("false")},
			target: deleted(target(apifake.ForceDeleted, apifake.EvictedBeforeStart)),
			skip:   "may restart", check: nothingWritten,
		},
		{
			name: "pod evicted before its main container started, gone, node not yet updated by the controller: wait for its word",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, target: deleted(target(apifake.ForceDeleted, apifake.EvictedBeforeStart)),
			skip: "may restart", check: nothingWritten,
		},
		{
			name: "pod evicted before its main container started, still there, node Running: wait for the controller's word",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.EvictedBeforeStart), apifake.HostNode()}, target: target(apifake.EvictedBeforeStart),
			skip: "may restart", check: nothingWritten,
		},
		{
			name: "pod evicted before its main container started, the controller marked the node Failed (no restart): complete",
			objs: []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodeFailed)), apifake.TaskResult("false"), apifake.Pod(apifake.EvictedBeforeStart), apifake.HostNode()}, target: target(apifake.EvictedBeforeStart),
			want: []Action{CompleteTaskResult}, record: true, check: taskResultCompleted("Evicted"),
		},
		{
			name: "pod evicted before its main container started, gone, node Failed (restarts exhausted): complete",
			objs: []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodeFailed)), apifake.TaskResult("false")}, target: deleted(target(apifake.ForceDeleted, apifake.EvictedBeforeStart)),
			want: []Action{CompleteTaskResult}, record: true, check: taskResultCompleted("Evicted"),
		},
		{
			name: "task result missing, node still Running: nothing (its executor may yet start)",
			objs: []runtime.Object{apifake.Workflow()}, target: target(),
			skip: "nothing to repair", check: nothingWritten,
		},
		{
			name: "machine terminated, pod held by a foreign finalizer too: release ours, wait (deleting would leave the object)",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.WithFinalizer)}, target: machineGone(target(apifake.WithFinalizer)),
			want: []Action{ReleaseStatusFinalizer}, record: true,
			check: taskResultLabel("false"),
		},
		{
			name: "machine terminated, pod Failed with its containers ended: no deletion needed, complete",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Failed, apifake.WithStatusFinalizer)}, target: machineGone(target(apifake.Failed, apifake.WithStatusFinalizer)),
			want: []Action{ReleaseStatusFinalizer, CompleteTaskResult}, record: true,
			check: taskResultCompleted("NodeDeleted"),
		},
		{
			name: "machine terminated but the pod was re-created under the same name: the new one is left alone",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Reincarnated), apifake.HostNode()}, target: machineGone(target()),
			skip: "re-created under the same name", calls: 2, check: nothingWritten,
		},
		{
			name: "pod stuck terminating gracefully on a gone node with the status finalizer and another: release ours, wait",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Terminating, apifake.WithFinalizer)}, target: target(apifake.Terminating, apifake.WithFinalizer),
			want: []Action{ReleaseStatusFinalizer}, record: true,
			check: func(t *testing.T, c *apifake.Cluster) {
				p, _ := c.Kube.CoreV1().Pods(apifake.Namespace).Get(ctx, apifake.PodName, metav1.GetOptions{})
				if !slices.Equal(p.Finalizers, []string{"example.com/keep"}) {
					t.Errorf("finalizers = %v, want only the foreign one kept", p.Finalizers)
				}
				if c.GetTaskResult(t).Labels[argoworkflow.LabelReportOutputsCompleted] != "false" {
					t.Error("task result completed while the pod still exists: PodGC's Failed status could be read as success")
				}
			},
		},
		{
			name: "pod still Running on a gone node (before PodGC) with the status finalizer, machine not claimed terminated: nothing yet (the finalizer guards the controller's read of PodGC's status)",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.WithFinalizer)}, target: target(apifake.WithFinalizer),
			skip: "waiting for its deletion", check: nothingWritten,
		},
		{
			name: "pod still Running on a gone node, no finalizer: wait for PodGC's deletion",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod()}, target: target(),
			skip: "waiting for its deletion", check: nothingWritten,
		},
		{
			name:   "instance claimed terminated while its Node object remains: the pod is running, nothing",
			objs:   []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(), apifake.HostNode()},
			target: func() Target { t := target(); t.Machine = eventing.MachineTerminated; return t }(),
			skip:   "pod is running", calls: 4,
			check: nothingWritten,
		},
		{
			name: "pod force-deleted on a gone node, task result complete: release only",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("true"), apifake.Pod(apifake.ForceDeleted, apifake.WithStatusFinalizer)}, target: target(apifake.ForceDeleted, apifake.WithStatusFinalizer),
			want: []Action{ReleaseStatusFinalizer}, record: true,
		},
		{
			name: "node still Running past the grace with no pod: mark it Error (step 4)",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("true")}, target: target(), now: late,
			want: []Action{MarkNodeError}, record: true,
			check: func(t *testing.T, c *apifake.Cluster) {
				n := c.GetWorkflow(t).Status.Nodes[apifake.NodeID]
				if n.Phase != wfv1.NodeError || n.Message != PodDeletedMessage || n.FinishedAt.IsZero() {
					t.Errorf("node = %s %q %v", n.Phase, n.Message, n.FinishedAt)
				}
				if len(c.GetWorkflow(t).Status.Nodes) != 3 {
					t.Error("other nodes lost")
				}
				recorded(UnknownReason)(t, c)
			},
		},
		{
			name: "steps 1 and 4 together",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, target: target(), now: late,
			want: []Action{CompleteTaskResult, MarkNodeError}, record: true,
		},
		{
			name: "node Running with no pod, within the grace: leave it to the controller",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("true")}, target: target(),
			skip: "nothing to repair", check: nothingWritten,
		},
		{
			name: "node Pending with no pod: the controller re-creates the pod",
			objs: []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodePending)), apifake.TaskResult("true")}, target: target(), now: late,
			skip: "nothing to repair", check: nothingWritten,
		},
		{
			name: "compressed node Running past the grace: never written",
			objs: []runtime.Object{apifake.Workflow(apifake.WithCompressedNodes), apifake.TaskResult("true")}, target: target(), now: late,
			skip: "nothing to repair", check: nothingWritten,
		},
		{
			name: "dry run: plan made, writes sent as dry run, nothing changed",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, target: target(apifake.Evicted), dryRun: true,
			want: []Action{CompleteTaskResult}, record: true,
			// Argo's generated fake drops PatchOptions, so only the Kubernetes side can show
			// that nothing persisted; test/e2e checks the Argo objects on a real API server.
			check: func(t *testing.T, c *apifake.Cluster) {
				if len(eventsIn(t, c)) != 0 {
					t.Error("dry run created an Event")
				}
				if w := c.Writes(); len(w) != 3 {
					t.Errorf("dry-run writes = %v, want the 3 of a real run", w)
				}
			},
		},
		{
			name: "an earlier delivery repaired but stopped before recording: record only",
			objs: []runtime.Object{apifake.Workflow(), func() runtime.Object {
				tr := apifake.TaskResult("true")
				tr.Annotations = map[string]string{argoworkflow.AnnotationRepaired: Record{Pod: apifake.PodName, NodeID: apifake.NodeID, Reason: "EvictionByEvictionAPI", Actions: []string{"complete-task-result"}, Time: apifake.T0}.Marshal()}
				return tr
			}()},
			target: target(),
			record: true,
			check:  recorded("EvictionByEvictionAPI"),
		},
		{
			name: "a 409 on the task result: re-read, re-decide, done",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, target: target(apifake.Evicted),
			failNext: map[string]error{"patch workflowtaskresults": apierrors.NewConflict(schema.GroupResource{Resource: "workflowtaskresults"}, apifake.NodeID, errors.New("modified"))},
			want:     []Action{CompleteTaskResult}, record: true, calls: 11,
			check: taskResultCompleted("EvictionByEvictionAPI"),
		},
		{
			// The repair's task-result write went through, its Event POST failed; the controller
			// finished the workflow and deleted its task results before the re-delivery.
			name:   "workflow finished after our repair, record missing: record only",
			objs:   []runtime.Object{apifake.Workflow(apifake.WithPhase(wfv1.WorkflowFailed), apifake.WithNodePhase(wfv1.NodeError), apifake.WithNodeMessage("pod deleted"))},
			target: target(apifake.Evicted), record: true,
			check: func(t *testing.T, c *apifake.Cluster) {
				rec, ok := Recorded(c.GetWorkflow(t))[apifake.NodeID]
				if !ok || rec.Reason != "EvictionByEvictionAPI" || len(eventsIn(t, c)) != 1 {
					t.Errorf("record %+v (%v), events %d", rec, ok, len(eventsIn(t, c)))
				}
			},
		},
		{
			name:   "workflow finished, its node Succeeded: nothing to record",
			objs:   []runtime.Object{apifake.Workflow(apifake.WithPhase(wfv1.WorkflowSucceeded), apifake.WithNodePhase(wfv1.NodeSucceeded))},
			target: target(apifake.Evicted), skip: "already Succeeded", check: nothingWritten,
		},
		{
			name:   "workflow finished, a sweep-like target (no pod UID): nothing",
			objs:   []runtime.Object{apifake.Workflow(apifake.WithPhase(wfv1.WorkflowFailed), apifake.WithNodePhase(wfv1.NodeError), apifake.WithNodeMessage("pod deleted"))},
			target: func() Target { t := target(apifake.Evicted); t.PodUID = ""; return t }(), skip: "already Failed", check: nothingWritten,
		},
		{
			name: "fast path: the pod is still terminating (graceful eviction): two reads, wait for its delete",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Terminating, apifake.Evicted), apifake.HostNode()}, target: deleted(target(apifake.Terminating, apifake.Evicted)),
			skip: "its delete event will follow", calls: 2, check: nothingWritten,
		},
		{
			name: "fast path: delete event of an evicted pod, task result incomplete",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, target: deleted(target(apifake.Evicted, apifake.Terminating, apifake.Failed)),
			want: []Action{CompleteTaskResult}, record: true, calls: 6,
			check: func(t *testing.T, c *apifake.Cluster) {
				got := c.Calls()
				recorded("EvictionByEvictionAPI")(t, c)
				if !slices.Equal(got, []string{"get workflows/" + apifake.WorkflowName, "get pods/" + apifake.PodName, "patch workflowtaskresults/" + apifake.NodeID, "get pods/" + apifake.PodName,
					"create events/" + Event(c.GetWorkflow(t), Record{NodeID: apifake.NodeID}, "").Name, "patch workflows/" + apifake.WorkflowName}) {
					t.Errorf("calls %v", got)
				}
				if tr := c.GetTaskResult(t); tr.Labels[argoworkflow.LabelRepaired] != string(CompleteTaskResult) || tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
					t.Errorf("task result labels %v", tr.Labels)
				}
			},
		},
		{
			name: "fast path: the pod was re-created under the same name: full path, left alone",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.Reincarnated), apifake.HostNode()}, target: deleted(target(apifake.Evicted)),
			skip: "re-created under the same name", check: nothingWritten,
		},
		{
			name: "fast path: task result already complete, record missing (a crash between): full path records",
			objs: []runtime.Object{apifake.Workflow(), func() runtime.Object {
				tr := apifake.TaskResult("true")
				tr.Labels[argoworkflow.LabelRepaired] = string(CompleteTaskResult)
				return tr
			}()}, target: deleted(target(apifake.Evicted)),
			record: true, check: recorded("EvictionByEvictionAPI"),
		},
		{
			name: "fast path: task result of another controller instance: refused by the test, full path skips",
			objs: []runtime.Object{apifake.Workflow(apifake.WithLabel(argoworkflow.LabelInstanceID, "team-b")), func() runtime.Object {
				tr := apifake.TaskResult("false")
				tr.Labels[argoworkflow.LabelInstanceID] = "team-b"
				return tr
			}()}, target: deleted(target(apifake.Evicted)),
			skip: "instance-id", check: taskResultLabel("false"),
		},
		{
			name: "fast path: no task result, node marked Error by the controller: full path creates it",
			objs: []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodeError), apifake.WithNodeMessage("pod deleted"))}, target: deleted(target(apifake.Evicted)),
			want: []Action{CreateTaskResult}, record: true, check: taskResultCompleted("EvictionByEvictionAPI"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := apifake.NewCluster(tc.objs...)
			for k, v := range tc.failNext {
				c.FailNext(k, v)
			}
			at := tc.now
			if at.IsZero() {
				at = now
			}
			r := repairerOver(c, at)
			r.opts.DryRun = tc.dryRun
			res, err := r.Repair(ctx, tc.target)
			if err != nil {
				t.Fatalf("Repair: %v (calls %v)", err, c.Calls())
			}
			if !slices.Equal(res.Plan.Actions, tc.want) || res.Plan.Record != tc.record {
				t.Fatalf("plan = %v record=%v (skip %q), want %v record=%v", res.Plan.Actions, res.Plan.Record, res.Plan.Skip, tc.want, tc.record)
			}
			if !slices.Equal(res.Done, tc.want) && !(len(res.Done) == 0 && len(tc.want) == 0) {
				t.Errorf("done = %v, want %v", res.Done, tc.want)
			}
			if tc.skip != "" && !strings.Contains(res.Plan.Skip, tc.skip) {
				t.Errorf("skip = %q, want it to say %q", res.Plan.Skip, tc.skip)
			}
			if tc.calls != 0 && len(c.Calls()) != tc.calls {
				t.Errorf("%d API calls, want %d: %v", len(c.Calls()), tc.calls, c.Calls())
			}
			if tc.check != nil {
				tc.check(t, c)
			}
			if wf, err := c.Argo.ArgoprojV1alpha1().Workflows(apifake.Namespace).Get(ctx, apifake.WorkflowName, metav1.GetOptions{}); err == nil &&
				wf.Annotations[argoworkflow.AnnotationLastSeenVersion] != apifake.LastSeenVersion {
				t.Errorf("last-seen-version = %q, want the controller's %q untouched", wf.Annotations[argoworkflow.AnnotationLastSeenVersion], apifake.LastSeenVersion)
			}
			if tc.dryRun {
				return
			}
			// Every repair is idempotent: the same signal again writes nothing.
			before := len(c.Writes())
			res2, err := r.Repair(ctx, tc.target)
			if err != nil || !res2.Plan.Empty() || len(c.Writes()) != before {
				t.Errorf("second delivery: plan %+v, err %v, writes %v", res2.Plan, err, c.Writes()[before:])
			}
		})
	}
}

func TestDryRunOptions(t *testing.T) {
	r := &Repairer{opts: Options{DryRun: true}}
	if !slices.Equal(r.patchOptions().DryRun, []string{metav1.DryRunAll}) || !slices.Equal(r.createOptions().DryRun, []string{metav1.DryRunAll}) {
		t.Fatal("dry run not sent with every write")
	}
	r.opts.DryRun = false
	if r.patchOptions().DryRun != nil || r.createOptions().DryRun != nil {
		t.Fatal("dry run sent without the setting")
	}
}

func TestRepairErrors(t *testing.T) {
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "workflowtaskresults"}, apifake.NodeID, errors.New("modified"))
	cases := []struct {
		name    string
		fail    string
		err     error
		always  bool
		wantIs  func(error) bool
		wantMsg string
	}{
		{"API unavailable reading the workflow", "get workflows", apierrors.NewServiceUnavailable("etcd leader changed"), false, apierrors.IsServiceUnavailable, "reading workflow argo/" + apifake.WorkflowName},
		{"throttled reading the pod", "get pods", apierrors.NewTooManyRequests("slow down", 1), false, apierrors.IsTooManyRequests, "reading pod argo/" + apifake.PodName},
		{"forbidden patching the task result", "patch workflowtaskresults", apierrors.NewForbidden(schema.GroupResource{Resource: "workflowtaskresults"}, apifake.NodeID, errors.New("RBAC")), false, apierrors.IsForbidden, "completing task result argo/" + apifake.NodeID},
		{"conflicts every time", "patch workflowtaskresults", conflict, true, func(err error) bool { return errors.Is(err, ErrConflictsExhausted) }, "workflow argo/" + apifake.WorkflowName},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"))
			c.FailNext(tc.fail, tc.err)
			if tc.always {
				c.Kube.PrependReactor("patch", "workflowtaskresults", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
				c.Argo.PrependReactor("patch", "workflowtaskresults", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
			}
			_, err := repairerOver(c, apifake.T0.Add(7*time.Minute)).Repair(ctx, target())
			if err == nil || !tc.wantIs(err) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want one naming %q", err, tc.wantMsg)
			}
			if got := c.GetTaskResult(t).Labels[argoworkflow.LabelReportOutputsCompleted]; got != "false" && !strings.Contains(tc.name, "reading") {
				t.Errorf("half-written: label %q", got)
			}
		})
	}
}

// machineGone marks a target as a Node-delete signal of a terminated machine gives it.
func machineGone(t Target) Target {
	t.NodeName, t.Machine = apifake.HostName, eventing.MachineTerminated
	if t.Reason == UnknownReason {
		t.Reason = "NodeDeleted"
	}
	return t
}

func podGone(t *testing.T, c *apifake.Cluster) {
	t.Helper()
	if _, err := c.Kube.CoreV1().Pods(apifake.Namespace).Get(ctx, apifake.PodName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod still there (err %v)", err)
	}
}

func taskResultLabel(want string) func(*testing.T, *apifake.Cluster) {
	return func(t *testing.T, c *apifake.Cluster) {
		t.Helper()
		if got := c.GetTaskResult(t).Labels[argoworkflow.LabelReportOutputsCompleted]; got != want {
			t.Errorf("task result label %q, want %q", got, want)
		}
	}
}

func all(checks ...func(*testing.T, *apifake.Cluster)) func(*testing.T, *apifake.Cluster) {
	return func(t *testing.T, c *apifake.Cluster) {
		for _, ch := range checks {
			ch(t, c)
		}
	}
}

// deleted marks a target as a Resource-mode delete event gives it: the pod incarnation gone,
// the Workflow's UID from the pod's ownerReference.
func deleted(t Target) Target {
	t.FromPodEvent, t.WorkflowUID = true, apifake.WorkflowUID
	return t
}

// TestRecreatedWhileCompleting: Argo 3.7 re-creates the pod of a node whose task result it still
// saw incomplete, under the same name, between our read of the name (404) and our completion.
// The completion is undone and nothing is recorded: the new incarnation reports for itself.
func TestRecreatedWhileCompleting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target Target
	}{
		{"fast path", deleted(target(apifake.Evicted))},
		{"full path", target(apifake.Evicted)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"))
			c.Argo.PrependReactor("patch", "workflowtaskresults", func(k8stesting.Action) (bool, runtime.Object, error) {
				// The controller's new pod lands right after the completion.
				_ = c.Kube.Tracker().Add(apifake.Pod(apifake.Reincarnated))
				return false, nil, nil
			})
			res, err := repairerOver(c, apifake.T0.Add(6*time.Minute+5*time.Second)).Repair(ctx, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(res.Plan.Skip, "re-created") || slices.Contains(res.Done, CompleteTaskResult) || res.Recorded {
				t.Errorf("result %+v", res)
			}
			tr := c.GetTaskResult(t)
			if tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "false" || tr.Labels[argoworkflow.LabelRepaired] != "" || tr.Annotations[argoworkflow.AnnotationRepaired] != "" {
				t.Errorf("completion not undone: %v %v", tr.Labels, tr.Annotations)
			}
			if len(eventsIn(t, c)) != 0 || len(Recorded(c.GetWorkflow(t))) != 0 {
				t.Error("a record was written for a repair that was undone")
			}
		})
	}
}

// A repair on a workflow that already carries MaxRecords records folds the oldest into a count:
// the Workflow never grows toward Argo's size limit however many pods it loses.
func TestRecordsStayBounded(t *testing.T) {
	wf := apifake.Workflow()
	wf.Annotations = map[string]string{}
	for i := range MaxRecords {
		id := fmt.Sprintf("%s-%d", apifake.WorkflowName, 2000+i)
		wf.Annotations[AnnotationKey(apifake.WorkflowName, id)] = Record{NodeID: id, Time: apifake.T0.Add(time.Duration(i) * time.Second)}.Marshal()
	}
	c := apifake.NewCluster(wf, apifake.TaskResult("false"))
	if _, err := repairerOver(c, apifake.T0.Add(6*time.Minute+5*time.Second)).Repair(ctx, deleted(target(apifake.Evicted))); err != nil {
		t.Fatal(err)
	}
	got := c.GetWorkflow(t)
	if n := len(Recorded(got)); n != MaxRecords || got.Annotations[AnnotationFolded] != "1" || !HasRecord(got, apifake.NodeID) {
		t.Fatalf("%d records, folded %q, new record kept %v", n, got.Annotations[AnnotationFolded], HasRecord(got, apifake.NodeID))
	}
}

// A pod left Running by its terminated machine gets its task result completed before it is
// deleted (so Argo 3.7 marks the node Error instead of re-creating the pod); when the deletion
// fails, the completion is undone: the pod would otherwise stay with an open gate, and PodGC's
// Failed status would later read as success.
func TestFailedRemovalUndoesCompletion(t *testing.T) {
	c := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod())
	c.FailNext("delete pods", apierrors.NewInternalError(errors.New("etcd")))
	res, err := repairerOver(c, apifake.T0.Add(6*time.Minute+5*time.Second)).Repair(ctx, machineGone(target()))
	if err == nil || !apierrors.IsInternalError(err) {
		t.Fatalf("err = %v, want the deletion's", err)
	}
	if tr := c.GetTaskResult(t); tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "false" || tr.Labels[argoworkflow.LabelRepaired] != "" {
		t.Errorf("completion not undone: %v", tr.Labels)
	}
	if slices.Contains(res.Done, CompleteTaskResult) {
		t.Errorf("done %v reports the undone completion", res.Done)
	}
}

// A gone pod whose last status was misleading, while the controller has not yet marked its node:
// the event is answered at once and the repair followed up; once the Workflow shows the node
// Error, the follow-up completes the task result. Stop ends the follow-ups.
func TestFollowUpCompletesOnceTheControllerSawThePodGo(t *testing.T) {
	c := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"))
	r := repairerOver(c, apifake.T0.Add(6*time.Minute+5*time.Second))
	r.opts.FollowUps = &FollowUps{For: 5 * time.Second, Max: 10, First: 10 * time.Millisecond}
	res, err := r.Repair(ctx, deleted(target(apifake.ForceDeleted, apifake.MarkedFailedByPodGC)))
	if err != nil || !res.Plan.Await || r.opts.FollowUps.Following() != 1 {
		t.Fatalf("first run: %+v, %v, following %d", res.Plan, err, r.opts.FollowUps.Following())
	}
	// The same target from a second event is not followed twice.
	if _, err := r.Repair(ctx, deleted(target(apifake.ForceDeleted, apifake.MarkedFailedByPodGC))); err != nil || r.opts.FollowUps.Following() != 1 {
		t.Fatalf("second event: %v, following %d", err, r.opts.FollowUps.Following())
	}
	time.Sleep(50 * time.Millisecond)
	if got := c.GetTaskResult(t).Labels[argoworkflow.LabelReportOutputsCompleted]; got != "false" {
		t.Fatalf("completed (%q) before the controller marked the node", got)
	}
	wf := c.GetWorkflow(t)
	apifake.WithNodePhase(wfv1.NodeError)(wf)
	apifake.WithNodeMessage("pod deleted")(wf)
	if _, err := c.Argo.ArgoprojV1alpha1().Workflows(apifake.Namespace).Update(ctx, wf, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for c.GetTaskResult(t).Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
		if time.Now().After(deadline) {
			t.Fatal("the follow-up did not complete the task result")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r.opts.FollowUps.Stop(stopCtx)
	if n := r.opts.FollowUps.Following(); n != 0 {
		t.Errorf("%d still followed after Stop", n)
	}
}
