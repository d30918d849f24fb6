package repair

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/apifake"
)

// notices is a Notifier that keeps what it is told.
type notices struct {
	mu       sync.Mutex
	repairs  []notice
	warnings []notice
}

type notice struct {
	wf     *wfv1.Workflow
	rec    Record
	pod    string
	w      Warning
	dryRun bool
	// writes are the cluster's writes when the notice came: the notice follows all of them.
	writes int
}

func (n *notices) Repaired(_ context.Context, wf *wfv1.Workflow, rec Record) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.repairs = append(n.repairs, notice{wf: wf, rec: rec})
}

func (n *notices) Warned(_ context.Context, wf *wfv1.Workflow, pod *corev1.Pod, w Warning, dryRun bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.warnings = append(n.warnings, notice{wf: wf, pod: pod.Name, w: w, dryRun: dryRun})
}

// TestOneNoticePerRecordAfterEveryWrite: every path that writes a record tells the Notifier once,
// after the run's last write, with every step the run wrote; a run that records nothing, and a
// re-delivery, tell nothing.
func TestOneNoticePerRecordAfterEveryWrite(t *testing.T) {
	now := apifake.T0.Add(6*time.Minute + 5*time.Second)
	listed := apifake.Pod()
	cases := []struct {
		name    string
		objs    []runtime.Object
		run     func(*Repairer) (Result, error)
		dryRun  bool
		fail    string // a call failing with 503
		actions []string
		reason  string
		wantErr bool
	}{
		{
			name: "full path: the evicted pod is gone, its task result completed",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")},
			run: func(r *Repairer) (Result, error) {
				return r.Repair(ctx, target(apifake.Evicted, apifake.Terminating, apifake.Failed))
			},
			actions: []string{"complete-task-result"}, reason: "EvictionByEvictionAPI",
		},
		{
			name: "four-call path: the pod's own delete event",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")},
			run: func(r *Repairer) (Result, error) {
				return r.Repair(ctx, deleted(target(apifake.Evicted)))
			},
			actions: []string{"complete-task-result"}, reason: "EvictionByEvictionAPI",
		},
		{
			name: "finalizer released, then the task result completed in the same run: both steps told",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), apifake.Pod(apifake.ForceDeleted, apifake.WithStatusFinalizer)},
			run: func(r *Repairer) (Result, error) {
				return r.Repair(ctx, target(apifake.ForceDeleted, apifake.WithStatusFinalizer))
			},
			actions: []string{"release-status-finalizer", "complete-task-result"}, reason: UnknownReason,
		},
		{
			name: "node-wide short path: machine terminated, pod still Running",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false"), listed},
			run: func(r *Repairer) (Result, error) {
				return r.RepairListed(ctx, machineGone(target()), Listed{Pod: listed, HostGoneAt: now})
			},
			actions: []string{"complete-task-result", "delete-orphaned-pod"}, reason: "NodeDeleted",
		},
		{
			name: "dry run: told, marked as such",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")},
			run: func(r *Repairer) (Result, error) {
				return r.Repair(ctx, target(apifake.Evicted, apifake.Terminating, apifake.Failed))
			},
			dryRun: true, actions: []string{"complete-task-result"}, reason: "EvictionByEvictionAPI",
		},
		{
			name: "task result already complete: nothing written, nothing told",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("true")},
			run: func(r *Repairer) (Result, error) {
				return r.Repair(ctx, target(apifake.Evicted, apifake.Terminating, apifake.Failed))
			},
		},
		{
			name: "the record's Event refused: no record, nothing told",
			objs: []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")},
			run: func(r *Repairer) (Result, error) {
				return r.Repair(ctx, target(apifake.Evicted, apifake.Terminating, apifake.Failed))
			},
			fail: "create events", wantErr: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := apifake.NewCluster(tc.objs...)
			if tc.fail != "" {
				c.FailNext(tc.fail, apierrors.NewServiceUnavailable("etcdserver: leader changed"))
			}
			n := &notices{}
			r := repairerOver(c, now)
			r.opts.DryRun, r.opts.Notifier = tc.dryRun, &writesCounter{n: n, c: c}
			_, err := tc.run(r)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want one: %v (calls %v)", err, tc.wantErr, c.Calls())
			}
			if tc.actions == nil {
				if len(n.repairs) != 0 {
					t.Fatalf("told %+v, want nothing", n.repairs)
				}
				return
			}
			if len(n.repairs) != 1 {
				t.Fatalf("told %d times, want once: %+v", len(n.repairs), n.repairs)
			}
			got := n.repairs[0]
			if !slices.Equal(got.rec.Actions, tc.actions) || got.rec.Reason != tc.reason || got.rec.NodeID != apifake.NodeID ||
				got.rec.Pod != apifake.PodName || got.rec.DryRun != tc.dryRun || !got.rec.Time.Equal(now.Truncate(time.Second)) {
				t.Errorf("record told = %+v, want actions %v reason %q dryRun %v", got.rec, tc.actions, tc.reason, tc.dryRun)
			}
			if got.wf.Namespace != apifake.Namespace || got.wf.Name != apifake.WorkflowName || got.wf.UID != apifake.WorkflowUID {
				t.Errorf("workflow told = %s/%s %s", got.wf.Namespace, got.wf.Name, got.wf.UID)
			}
			if w := len(c.Writes()); got.writes != w {
				t.Errorf("told after %d writes, the run made %d: %v", got.writes, w, c.Writes())
			}
			if tc.dryRun {
				return
			}
			// The same signal again writes nothing, and tells nothing.
			if _, err := tc.run(r); err != nil || len(n.repairs) != 1 {
				t.Errorf("second delivery: err %v, told %d times", err, len(n.repairs))
			}
		})
	}
}

// writesCounter notes how many writes the cluster had seen when a notice came.
type writesCounter struct {
	n *notices
	c *apifake.Cluster
}

func (w *writesCounter) Repaired(ctx context.Context, wf *wfv1.Workflow, rec Record) {
	w.n.Repaired(ctx, wf, rec)
	w.n.repairs[len(w.n.repairs)-1].writes = len(w.c.Writes())
}

func (w *writesCounter) Warned(ctx context.Context, wf *wfv1.Workflow, pod *corev1.Pod, warning Warning, dryRun bool) {
	w.n.Warned(ctx, wf, pod, warning, dryRun)
	w.n.warnings[len(w.n.warnings)-1].writes = len(w.c.Writes())
}

// TestOneNoticePerWarningWritten: a warning written on a Workflow is told once, after its three
// writes; the same warning again writes and tells nothing; a warning about a finished workflow
// is neither written nor told.
func TestOneNoticePerWarningWritten(t *testing.T) {
	w := Warning{Source: "karpenter", Reason: "SpotInterrupted", Message: "Spot interruption warning was triggered", Node: apifake.HostName, Time: apifake.T0.Add(5 * time.Minute)}
	cases := []struct {
		name   string
		wf     *wfv1.Workflow
		dryRun bool
		told   int
	}{
		{"running workflow", apifake.Workflow(), false, 1},
		{"dry run", apifake.Workflow(), true, 1},
		{"workflow already finished", apifake.Workflow(apifake.WithPhase(wfv1.WorkflowSucceeded)), false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := apifake.Pod()
			c := apifake.NewCluster(tc.wf, pod)
			n := &notices{}
			r := repairerOver(c, apifake.T0.Add(5*time.Minute))
			r.opts.DryRun, r.opts.Notifier = tc.dryRun, &writesCounter{n: n, c: c}
			if err := r.RecordWarning(ctx, pod, w); err != nil {
				t.Fatal(err)
			}
			firstWrites := len(c.Writes())
			if !tc.dryRun {
				// The same warning again (the pod as the cluster has it now): nothing more told.
				again, err := c.Kube.CoreV1().Pods(apifake.Namespace).Get(ctx, apifake.PodName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if err := r.RecordWarning(ctx, again, w); err != nil {
					t.Fatal(err)
				}
			}
			if len(n.warnings) != tc.told {
				t.Fatalf("told %d times, want %d: %+v", len(n.warnings), tc.told, n.warnings)
			}
			if tc.told == 0 {
				return
			}
			got := n.warnings[0]
			if got.pod != apifake.PodName || got.w != w || got.dryRun != tc.dryRun || got.wf.UID != apifake.WorkflowUID {
				t.Errorf("warning told = %+v", got)
			}
			if got.writes != firstWrites || firstWrites != 3 {
				t.Errorf("told after %d writes, the warning made %d (want 3: pod, Event, workflow): %v", got.writes, firstWrites, c.Writes())
			}
		})
	}
}
