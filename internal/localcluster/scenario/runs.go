package scenario

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// startGrace is how long a pod runs before it is taken away: Argo's podReconciliation ignores
// nodes for RECENTLY_STARTED_POD_DURATION (10 s) after they start.
const startGrace = 11 * time.Second

// withBound is how long a run with the function is waited for: the controller's next reconcile
// (DEFAULT_REQUEUE_TIME, 10 s) plus the retry or exit-handler pod it then runs.
const withBound = 90 * time.Second

func (e *Env) boundFor(m Mode) time.Duration {
	if m == With {
		return withBound
	}
	return e.Bound
}

// settle waits a little for a workflow that left Running to reach its final phase.
func (e *Env) settle(ctx context.Context, wf *wfv1.Workflow) *wfv1.Workflow {
	last := wf
	_ = poll(ctx, 250*time.Millisecond, 30*time.Second, func() (bool, error) {
		cur, err := e.Argo.ArgoprojV1alpha1().Workflows(wf.Namespace).Get(ctx, wf.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = cur
		return cur.Status.Phase.Completed(), nil
	})
	return last
}

// PodDeletion runs scenarios a, b and e: a workflow whose pod is taken away while Running.
func (e *Env) PodDeletion(ctx context.Context, scenario string, mode Mode, s Spec, how Deletion, fn *Function) Result {
	res := Result{Version: e.Version, Scenario: scenario, Mode: mode, Repair: -1, Moved: -1, Bound: e.boundFor(mode)}
	wf, err := e.Submit(ctx, "sc-"+scenario+"-", s)
	if err != nil {
		res.Err = err
		return res
	}
	w, err := e.disrupt(ctx, wf, how)
	if err != nil {
		res.Err = err
		return res
	}
	e.Logf("%s/%s %s: pod %s deleted (%s)", scenario, mode, wf.Name, w.victim, how)
	res.Repair, res.Released, res.Moved, res.Outcome = w.follow(ctx, mode, res.Bound)
	if mode == DryRun && fn != nil && !fn.LogContains(`"repair plan"`, wf.Name, `"dryRun":true`) {
		res.Err = fmt.Errorf("dry run: no plan for %s in the function's log %s", wf.Name, fn.LogPath)
	}
	res.Timeline, res.Workflow, res.T0 = w.timeline, wf.Name, w.t0
	return res
}

// disrupt waits for the workflow's pod to run, creates its incomplete task result as the wait
// container would, lets the controller's start grace pass, takes the pod away, and returns the
// watch that measures from that moment.
func (e *Env) disrupt(ctx context.Context, wf *wfv1.Workflow, how Deletion) (*watch, error) {
	pod, err := e.RunningPod(ctx, wf)
	if err != nil {
		return nil, err
	}
	nodeID, err := e.Gate(ctx, wf, pod)
	if err != nil {
		return nil, err
	}
	time.Sleep(startGrace)
	t0, err := e.Delete(ctx, pod, how)
	if err != nil {
		return nil, fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	w := &watch{env: e, wf: wf, nodeID: nodeID, victim: pod.Name, t0: t0}
	w.note("pod %s of workflow %s taken away (%s)", pod.Name, wf.Name, how)
	return w, nil
}

// follow measures the repair, the gate's release and the workflow's move from t0, completing
// the other pods.
func (w *watch) follow(ctx context.Context, mode Mode, bound time.Duration) (repair, released, moved time.Duration, out string) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.completeOthers(cctx)
	repair = -1
	var wg sync.WaitGroup
	if mode != Without {
		wg.Add(1)
		go func() { defer wg.Done(); repair = w.repairSeen(ctx, 20*time.Second) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); released = w.gateReleased(cctx, bound) }()
	moved, last := w.leftRunning(ctx, bound)
	if moved >= 0 {
		last = w.env.settle(ctx, last)
	}
	if moved >= 0 {
		// The workflow cannot finish while the gate holds: give the release watcher its last look.
		time.AfterFunc(time.Second, cancel)
	} else {
		cancel()
	}
	wg.Wait()
	return repair, released, moved, outcome(last)
}

// CronForbid runs scenario c: a CronWorkflow with concurrencyPolicy Forbid whose running
// workflow loses its pod. Moved is the time until the next scheduled workflow is created.
func (e *Env) CronForbid(ctx context.Context, mode Mode, s Spec) Result {
	res := Result{Version: e.Version, Scenario: "c", Mode: mode, Repair: -1, Moved: -1, Bound: e.boundFor(mode)}
	if mode == With {
		res.Bound = 150 * time.Second // up to a minute to the next schedule
	}
	name := fmt.Sprintf("sc-c-%s", mode)
	cron := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
		"metadata": map[string]any{"name": name, "namespace": s.Namespace},
		"spec": map[string]any{
			"concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 0,
			"workflowSpec": s.workflowSpec(),
		},
	}}
	// v3.5 knows only spec.schedule, v4 only spec.schedules; 3.6 and 3.7 accept both.
	if strings.HasPrefix(e.Version, "v3.5.") {
		cron.Object["spec"].(map[string]any)["schedule"] = "* * * * *"
	} else {
		cron.Object["spec"].(map[string]any)["schedules"] = []any{"* * * * *"}
	}
	crons := e.C.Dynamic().Resource(cronGVR).Namespace(s.Namespace)
	if _, err := crons.Create(ctx, cron, metav1.CreateOptions{}); err != nil {
		res.Err = fmt.Errorf("creating cron workflow %s/%s: %w", s.Namespace, name, err)
		return res
	}
	defer func() { _ = crons.Delete(context.Background(), name, metav1.DeleteOptions{}) }()
	list := func() []wfv1.Workflow {
		l, err := e.Argo.ArgoprojV1alpha1().Workflows(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/cron-workflow=" + name})
		if err != nil {
			return nil
		}
		sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].CreationTimestamp.Before(&l.Items[j].CreationTimestamp) })
		return l.Items
	}
	var first *wfv1.Workflow
	if err := poll(ctx, 250*time.Millisecond, 80*time.Second, func() (bool, error) {
		if l := list(); len(l) > 0 {
			first = &l[0]
			return true, nil
		}
		return false, nil
	}); err != nil {
		res.Err = fmt.Errorf("cron workflow %s/%s never started a workflow: %w", s.Namespace, name, err)
		return res
	}
	w, err := e.disrupt(ctx, first, Force)
	if err != nil {
		res.Err = err
		return res
	}
	t0 := w.t0
	e.Logf("c/%s %s: pod %s deleted", mode, first.Name, w.victim)
	var wg sync.WaitGroup
	if mode != Without {
		wg.Add(1)
		go func() { defer wg.Done(); res.Repair = w.repairSeen(ctx, 20*time.Second) }()
	}
	rctx, stopRelease := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); res.Released = w.gateReleased(rctx, res.Bound) }()
	_ = poll(ctx, 250*time.Millisecond, res.Bound, func() (bool, error) {
		if len(list()) > 1 {
			res.Moved = time.Since(t0)
			return true, nil
		}
		return false, nil
	})
	stopRelease()
	wg.Wait()
	cur, _ := e.Argo.ArgoprojV1alpha1().Workflows(s.Namespace).Get(ctx, first.Name, metav1.GetOptions{})
	res.Outcome = fmt.Sprintf("first workflow: %s; %d workflows", outcome(cur), len(list()))
	return res
}

// recreated returns when a pod of another UID appears under pod's name (the controller running
// the step again), or -1 when none did before ctx ended or timeout.
func (e *Env) recreated(ctx context.Context, pod *corev1.Pod, t0 time.Time, timeout time.Duration) time.Duration {
	seen := time.Duration(-1)
	_ = poll(ctx, 200*time.Millisecond, timeout, func() (bool, error) {
		p, err := e.Kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && p.UID != pod.UID {
			seen = time.Since(t0)
			return true, nil
		}
		return false, nil
	})
	return seen
}

// DeadNodeRun is one workflow of scenario d.
type DeadNodeRun struct {
	Mode Mode
	Spec Spec
}

// DeadNode runs scenario d: pods carrying Argo's status finalizer on Nodes whose kubelet stops
// and whose Node objects are deleted (what Karpenter does to a terminated instance). PodGC in
// kube-controller-manager then deletes the pods; the clock starts when their deletionTimestamp is
// seen. The caller starts the controller with ARGO_POD_STATUS_CAPTURE_FINALIZER=true and
// restarts kwok afterwards.
func (e *Env) DeadNode(ctx context.Context, runs []DeadNodeRun) []Result {
	out := make([]Result, len(runs))
	type live struct {
		wf     *wfv1.Workflow
		pod    *corev1.Pod
		nodeID string
	}
	lives := make([]live, len(runs))
	for i, r := range runs {
		// Both modes get the full bound: with the function too, the outcome can be the
		// controller's own, at its release of the status finalizer 2 min after PodGC's deletion
		// (4.x: the gate holds the Failed node until the pod is gone; no event reaches the
		// function before).
		out[i] = Result{Version: e.Version, Scenario: "d", Mode: r.Mode, Repair: -1, Moved: -1, Rerun: -1, Bound: e.Bound}
		wf, err := e.Submit(ctx, "sc-d-", r.Spec)
		if err == nil {
			lives[i].wf = wf
			lives[i].pod, err = e.RunningPod(ctx, wf)
		}
		if err == nil {
			lives[i].nodeID, err = e.Gate(ctx, wf, lives[i].pod)
		}
		out[i].Err = err
	}
	time.Sleep(startGrace)
	e.C.StopKwok()
	for i, r := range runs {
		if out[i].Err == nil {
			if err := e.Kube.CoreV1().Nodes().Delete(ctx, r.Spec.Node, metav1.DeleteOptions{}); err != nil {
				out[i].Err = fmt.Errorf("deleting node %s: %w", r.Spec.Node, err)
			}
		}
	}
	nodesGone := time.Now()
	var wg sync.WaitGroup
	for i := range runs {
		if out[i].Err != nil {
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l := lives[i]
			// PodGC: orphaned pods are deleted after a 40 s quarantine, checked every 20 s.
			var t0 time.Time
			err := poll(ctx, 100*time.Millisecond, 120*time.Second, func() (bool, error) {
				p, err := e.Kube.CoreV1().Pods(l.pod.Namespace).Get(ctx, l.pod.Name, metav1.GetOptions{})
				if err != nil || p.DeletionTimestamp != nil {
					t0 = time.Now()
					return true, nil
				}
				return false, nil
			})
			if err != nil {
				out[i].Err = fmt.Errorf("pod %s/%s not deleted by PodGC: %w", l.pod.Namespace, l.pod.Name, err)
				return
			}
			w := &watch{env: e, wf: l.wf, nodeID: l.nodeID, victim: l.pod.Name, t0: t0}
			e.Logf("d/%s %s: pod %s deleted by PodGC %s after the Node", runs[i].Mode, l.wf.Name, l.pod.Name, t0.Sub(nodesGone).Round(time.Second))
			rctx, stopRerun := context.WithCancel(ctx)
			rerun := make(chan time.Duration, 1)
			go func() { rerun <- e.recreated(rctx, l.pod, t0, out[i].Bound) }()
			out[i].Repair, out[i].Released, out[i].Moved, out[i].Outcome = w.follow(ctx, runs[i].Mode, out[i].Bound)
			stopRerun()
			if out[i].Rerun = <-rerun; out[i].Rerun >= 0 {
				out[i].Outcome += fmt.Sprintf("; the controller re-created the pod %.2f s after the deletion (the step runs again)", out[i].Rerun.Seconds())
			}
			p, err := e.Kube.CoreV1().Pods(l.pod.Namespace).Get(ctx, l.pod.Name, metav1.GetOptions{})
			if err == nil {
				out[i].Outcome += fmt.Sprintf("; pod still there, finalizers %v", p.Finalizers)
			} else {
				out[i].Outcome += "; pod gone"
			}
			out[i].Outcome += fmt.Sprintf(" (PodGC deleted it %s after the Node)", t0.Sub(nodesGone).Round(time.Second))
		}(i)
	}
	wg.Wait()
	return out
}
