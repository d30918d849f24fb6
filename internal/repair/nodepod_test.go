package repair

import (
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/eventing"
	"function/internal/apifake"
	"function/internal/argoworkflow"
)

// A delete event naming a pod the node does not have — the node ID (Argo's v1 name) while the
// Workflow names its pods v2, or "<workflow>-<other template>-<hash>" — is not the node's pod
// going, whatever UIDs, owner or deletion time it carries: nothing is written while the node's
// real pod runs, nor once it is gone too (a 404 for that name proves nothing about the node's
// pod). The Workflow names the node's pod (NodePodName); when it cannot (offloaded nodes), the
// Workflow's pods are listed and the one that runs the node decides.
func TestEventNamesAPodTheNodeDoesNotHave(t *testing.T) {
	longAgo := metav1.NewTime(apifake.T0.Add(-72 * time.Hour))
	named := func(name string, opts ...func(*Target)) Target {
		tg := deleted(target(apifake.Evicted))
		tg.PodName, tg.PodUID = name, "0000-other-uid"
		for _, o := range opts {
			o(&tg)
		}
		return tg
	}
	withoutOwner := func(tg *Target) { tg.WorkflowUID = "" }
	byReference := func(tg *Target) {
		tg.FromPodEvent, tg.PodUID, tg.WorkflowUID, tg.StatusUnknown = false, "", apifake.WorkflowUID, true
	}
	offloaded := func(wf *wfv1.Workflow) { apifake.WithOffloadedNodes(wf) }
	running := apifake.Pod()
	running.DeletionTimestamp = nil
	cases := []struct {
		name   string
		objs   []runtime.Object
		target Target
		calls  int // at most (the four-call path's Workflow read, then the full path's)
	}{
		{"node ID as the name, the real owner, another UID, deleted long ago (four-call path)",
			[]runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), running, apifake.HostNode()}, named(apifake.NodeID), 2},
		{"node ID as the name, no owner reference (full path)",
			[]runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), running, apifake.HostNode()}, named(apifake.NodeID, withoutOwner), 1},
		{"node ID as the name, by reference",
			[]runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), running, apifake.HostNode()}, named(apifake.NodeID, byReference), 1},
		{"another template's name with the node's hash",
			[]runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), running, apifake.HostNode()}, named(apifake.WorkflowName + "-load-1770056762"), 2},
		{"node ID as the name, the node's real pod gone too: still not its name",
			[]runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, named(apifake.NodeID), 2},
		{"offloaded nodes: the node's pod listed by the Workflow's label runs under another name",
			[]runtime.Object{apifake.Workflow(offloaded), apifake.TaskResult("false"), running, apifake.HostNode()}, named(apifake.NodeID, withoutOwner), 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.target.DeletedAt = longAgo.Time
			c := apifake.NewCluster(tc.objs...)
			res, err := repairerOver(c, apifake.T0.Add(10*time.Minute)).Repair(ctx, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Plan.NotOurs || len(res.Done) != 0 {
				t.Errorf("plan %+v done %v, want not ours and nothing done", res.Plan, res.Done)
			}
			nothingWritten(t, c)
			if n := c.Count(""); n > tc.calls {
				t.Errorf("%d calls %v, want at most %d", n, c.Calls(), tc.calls)
			}
		})
	}
}

// The short paths read the Workflow before any write: one being deleted, or finished, is left
// alone even when the pod is gone and its task result still incomplete.
func TestShortPathsReadTheWorkflow(t *testing.T) {
	for _, tc := range []struct {
		name string
		wf   *wfv1.Workflow
	}{
		{"workflow being deleted", apifake.Workflow(apifake.WithDeletion())},
		{"workflow finished", apifake.Workflow(apifake.WithPhase(wfv1.WorkflowFailed))},
		{"workflow without a pod-name format yet", func() *wfv1.Workflow {
			wf := apifake.Workflow(apifake.WithDeletion())
			delete(wf.Annotations, argoworkflow.AnnotationPodNameFormat)
			return wf
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := apifake.NewCluster(tc.wf, apifake.TaskResult("false"))
			if _, err := repairerOver(c, apifake.T0.Add(10*time.Minute)).Repair(ctx, deleted(target(apifake.Evicted))); err != nil {
				t.Fatal(err)
			}
			nothingWritten(t, c)
		})
	}
}

// A node-wide repair re-reads the listed pod before completing its task result: a pod changed
// since the LIST (PodGC set it Failed) goes down the full path, which waits for the controller;
// a change landing after that read makes the preconditioned deletion fail, and the completion is
// undone before anything else.
func TestNodeWideRechecksThePod(t *testing.T) {
	now := apifake.T0.Add(10 * time.Minute)
	listed := apifake.Pod()
	listed.DeletionTimestamp = nil
	tg := target()
	tg.Machine, tg.NodeName = eventing.MachineTerminated, apifake.HostName
	t.Run("PodGC set the pod Failed between the LIST and the repair", func(t *testing.T) {
		now := now
		cur := apifake.Pod(apifake.MarkedFailedByPodGC)
		cur.DeletionTimestamp, cur.ResourceVersion = nil, "71"
		c := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"), cur)
		if _, err := repairerOver(c, now).RepairListed(ctx, tg, Listed{Pod: listed, HostGoneAt: now}); err != nil {
			t.Fatal(err)
		}
		if tr := c.GetTaskResult(t); tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "false" {
			t.Errorf("task result completed over PodGC's Failed status: %v", tr.Labels)
		}
	})
	t.Run("PodGC's write lands between the re-read and the deletion", func(t *testing.T) {
		c := apifake.NewCluster(apifake.Workflow(), apifake.TaskResult("false"), listed)
		c.FailNext("delete pods", apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, apifake.PodName, nil))
		c.FailNext("delete pods", apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, apifake.PodName, nil))
		_, _ = repairerOver(c, now).RepairListed(ctx, tg, Listed{Pod: listed, HostGoneAt: now})
		calls := c.Calls()
		undone := false
		for i, call := range calls {
			if call == "delete pods/"+apifake.PodName && i+1 < len(calls) && calls[i+1] == "patch workflowtaskresults/"+apifake.NodeID {
				undone = true
			}
		}
		if !undone {
			t.Errorf("calls %v: the refused deletion was not followed by the completion's undo", calls)
		}
	})
}

// Grace periods count from when the function saw the pod go, never from the times an event
// carries: a deletion dated three days ago starts nothing early.
func TestGraceCountsFromTheFunctionsClock(t *testing.T) {
	seen := apifake.T0.Add(6 * time.Minute)
	p := apifake.Pod(apifake.Terminating)
	old := metav1.NewTime(seen.Add(-72 * time.Hour))
	p.DeletionTimestamp = &old
	tg, err := TargetFromPod(p, seen, "pod delete event")
	if err != nil {
		t.Fatal(err)
	}
	if !tg.DeletedAt.Equal(seen) {
		t.Errorf("DeletedAt %v, want the time the function saw it (%v)", tg.DeletedAt, seen)
	}
}
