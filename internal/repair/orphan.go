package repair

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"function/eventing"
	"function/internal/argoworkflow"
)

// HostReadValidity is how old the read that found a pod's Node gone may be for a node-wide
// repair to act on it without reading the Node again (docs/scale.md).
const HostReadValidity = time.Second

// Listed is a workflow pod as a LIST answered it, on a Node the caller read and found gone at
// HostGoneAt. It lets a node-wide repair decide from what it already holds.
type Listed struct {
	Pod        *corev1.Pod
	HostGoneAt time.Time
}

// ListedSkip returns why a pod on a gone host needs nothing from this signal, decided from the
// listed pod alone (no API call), or "". Only cases whose full decision does not depend on the
// Workflow or the task result are skipped: the full path would read them and decide the same.
func ListedSkip(t Target, pod *corev1.Pod) string {
	held := slices.Contains(pod.Finalizers, argoworkflow.FinalizerStatus)
	switch {
	case held:
		return ""
	case pod.DeletionTimestamp != nil && len(pod.Finalizers) == 0 && pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds == 0:
		return "pod force-deleted: the API server removes it, its delete event follows"
	case !statusIsOutcome(pod) && (t.Machine != eventing.MachineTerminated || otherFinalizers(pod)):
		return "pod still present on a gone node: waiting for its deletion"
	}
	return ""
}

// orphanEligible reports whether a listed pod may take the node-wide short path: its machine is
// claimed terminated, its Node was found gone within HostReadValidity, it is the incarnation the
// list returned with its Workflow named by UID, it never finished (its status reads as running,
// never as a success or a restartable failure), and nothing but Argo's status finalizer holds it.
func orphanEligible(t Target, l Listed, now time.Time) bool {
	p := l.Pod
	return t.Machine == eventing.MachineTerminated && !l.HostGoneAt.IsZero() && now.Sub(l.HostGoneAt) <= HostReadValidity &&
		t.PodUID != "" && p.UID == t.PodUID && t.WorkflowUID != "" && !PodFinished(p) && !t.MayRestart && !otherFinalizers(p)
}

// RepairListed repairs a pod a node-wide signal found on a gone host. An eligible pod takes the
// short path: its task result completed by a JSON patch the API server checks (fastComplete's),
// its status finalizer released on the listed resourceVersion, the pod deleted by UID, then the
// record — four calls, five with the finalizer, and no read. Anything else, or any precondition
// the API server refuses, goes down the full path, which reads everything and decides.
func (r *Repairer) RepairListed(ctx context.Context, t Target, l Listed) (Result, error) {
	if podNameNotNodes(t) != "" || !orphanEligible(t, l, r.opts.Now()) {
		return r.Repair(ctx, t)
	}
	log := r.targetLog(ctx, t)
	pod, err := r.podAsListed(ctx, t, l.Pod, log)
	if err != nil || pod == nil {
		if err != nil {
			return Result{Target: t, DryRun: r.opts.DryRun}, err
		}
		return r.Repair(ctx, t)
	}
	res, done, err := r.fastOrphan(ctx, t, pod, log)
	if !done {
		return r.Repair(ctx, t)
	}
	r.shortPathDone(log, t, res, err, "nodeWidePath")
	r.notifyRepaired(ctx, res)
	return res, err
}

// podAsListed reads the Workflow (as the four-call path does) and the pod again before anything
// is completed: the pod is returned only when it is still the listed incarnation, unchanged
// since the LIST (same resourceVersion: PodGC has not set it Failed meanwhile), and the
// Workflow names it as its node's pod; nil sends the target down the full path. The deletion
// that follows is preconditioned on that version, so a change after this read is a lost race
// that undoes the completion.
func (r *Repairer) podAsListed(ctx context.Context, t Target, listed *corev1.Pod, log *zap.SugaredLogger) (*corev1.Pod, error) {
	if ok, err := r.workflowNamesPod(ctx, t, log); !ok || err != nil {
		return nil, err
	}
	pod, err := r.readPod(ctx, t)
	switch {
	case err != nil || pod == nil:
		return nil, err
	case pod.UID != listed.UID || pod.ResourceVersion != listed.ResourceVersion:
		log.Infow("pod changed since the list: full path", zap.String("listedVersion", listed.ResourceVersion), zap.String("version", pod.ResourceVersion))
		return nil, nil
	}
	return pod, nil
}

// fastOrphan runs the short path. done is false when the full path must decide (nothing
// written, or the completion undone).
func (r *Repairer) fastOrphan(ctx context.Context, t Target, pod *corev1.Pod, log *zap.SugaredLogger) (res Result, done bool, err error) {
	res = Result{Target: t, DryRun: r.opts.DryRun, Attempts: 1}
	held := slices.Contains(pod.Finalizers, argoworkflow.FinalizerStatus)
	plan := Plan{Actions: []Action{CompleteTaskResult}, Record: true}
	if held {
		plan.Actions = append(plan.Actions, ReleaseStatusFinalizer)
	}
	plan.Actions = append(plan.Actions, DeleteOrphanedPod)
	log.Infow("repair plan", zap.Any("actions", plan.Actions), zap.Bool("record", plan.Record), zap.Bool("nodeWidePath", true))
	wf := workflowNamed(t)
	rec := r.newRecord(t, &Observation{}, plan)
	tr, ok, err := r.completeByTest(ctx, t, log)
	if !ok {
		return res, err != nil, err
	}
	res.Done = []Action{CompleteTaskResult}
	if held {
		var released *corev1.Pod
		if released, err = r.releaseStatusFinalizer(ctx, pod, rec); err == nil && released != nil && released.Name != "" {
			pod = released
		}
	}
	if err == nil {
		err = r.deleteOrphanedPod(ctx, pod)
	}
	if err != nil {
		// The pod stays with the task result completed: put the gate back before anything else
		// (apply's rule), then let the full path re-read and decide.
		if uerr := r.undoCompletion(ctx, tr); uerr != nil && !r.opts.DryRun {
			return res, true, fmt.Errorf("%s: %w; undoing the completion of task result %s/%s: %v", t, err, tr.Namespace, tr.Name, uerr)
		}
		res.Done = nil
		if errors.Is(err, errLostRace) {
			log.Infow("lost a race on the listed pod: full path", zap.Error(err))
			return res, false, nil
		}
		return res, true, err
	}
	res.Done = plan.Actions
	res.Plan = plan
	err = r.recordOn(ctx, wf, rec)
	if res.Recorded = err == nil; res.Recorded {
		res.wrote(wf, rec)
	}
	return res, true, err
}
