package repair

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
)

// fastEligible reports whether the target may take the four-call path: an event carried this
// pod incarnation (scope checked by the caller on its labels) and named its Workflow's UID, and
// the pod's last status cannot be mistaken for the step's outcome nor be one the controller
// restarts the pod for (both need the Workflow's word).
func fastEligible(t Target) bool {
	return t.FromPodEvent && t.PodName != "" && t.WorkflowUID != "" && t.PodUID != "" && !t.StatusMisleading && !t.MayRestart && !t.StatusUnknown
}

// fastComplete is ladder step 1 for a workflow pod deleted under a running step, its event in
// hand, in four calls and no read of the Workflow or the task result: GET the pod (a pod found
// at all, maybe a new incarnation, goes down the full path), PATCH the task result with a JSON
// patch whose test operations the API server checks (the executor's labels, our scope, this
// Workflow's UID), POST the Event, PATCH the record. docs/safety.md gives each call's reason.
// done is false when the full path must decide.
func (r *Repairer) fastComplete(ctx context.Context, t Target, log *zap.SugaredLogger) (res Result, done bool, err error) {
	res = Result{Target: t, DryRun: r.opts.DryRun, Attempts: 1}
	if ok, err := r.workflowNamesPod(ctx, t, log); !ok || err != nil {
		return res, err != nil, err
	}
	pod, err := r.kube.CoreV1().Pods(t.Namespace).Get(ctx, t.PodName, metav1.GetOptions{})
	switch {
	case err == nil && pod.UID == t.PodUID && pod.DeletionTimestamp != nil && !PodFinished(pod):
		// Still terminating (a graceful eviction: the kubelet runs the pod's shutdown, the wait
		// container may yet report): its delete event will follow, or, on a Node that is gone,
		// the Node's event or the sweep. One call, instead of the full path's five that would
		// decide the same.
		res.Plan = Plan{Skip: "pod terminating: its delete event will follow"}
		return res, true, nil
	case err == nil:
		return res, false, nil
	case !apierrors.IsNotFound(err):
		return res, true, fmt.Errorf("reading pod %s/%s: %w", t.Namespace, t.PodName, err)
	}
	plan := Plan{Actions: []Action{CompleteTaskResult}, Record: true}
	log.Infow("repair plan", zap.Any("actions", plan.Actions), zap.Bool("record", plan.Record), zap.Bool("fastPath", true))
	wf := workflowNamed(t)
	rec := r.newRecord(t, &Observation{}, plan)
	tr, ok, err := r.completeByTest(ctx, t, log)
	if !ok {
		return res, err != nil, err
	}
	if err := r.guardRecreation(ctx, t, tr); errors.Is(err, errRecreated) {
		log.Infow("completion undone: the pod was re-created under the same name", zap.Error(err))
		res.Plan = Plan{Skip: err.Error()}
		return res, true, nil
	} else if err != nil {
		return res, true, err
	}
	res.Plan, res.Done = plan, []Action{CompleteTaskResult}
	err = r.recordOn(ctx, wf, rec)
	if res.Recorded = err == nil; res.Recorded {
		res.wrote(wf, rec)
	}
	return res, true, err
}

// workflowNamesPod reads the target's Workflow and reports whether a short path may act on it:
// the incarnation the pod named, neither finished, nor being deleted, nor out of scope, not
// recording this pod's repair already, and naming the target's pod as its node's pod now
// (NodePodName). Anything else goes down the full path, which reads everything and decides.
func (r *Repairer) workflowNamesPod(ctx context.Context, t Target, log *zap.SugaredLogger) (bool, error) {
	wf, err := r.readWorkflow(ctx, t)
	if err != nil || wf == nil {
		return false, err
	}
	why := WorkflowSkip(wf, r.opts.Scope)
	if why == "" && wf.UID != t.WorkflowUID {
		why = "another workflow incarnation"
	}
	if why == "" && repairedBefore(wf, t) {
		why = "already repaired"
	}
	if why == "" {
		nodes, _, _ := argoworkflow.Nodes(wf)
		if name, known := NodePodName(wf, nodes, t.NodeID); !known || name != t.PodName {
			why = "the workflow does not name this pod as its node's"
		}
	}
	if why != "" {
		log.Debugw("short path not taken: full path", zap.String("why", why))
		return false, nil
	}
	return true, nil
}

// workflowNamed is the target's Workflow as the short paths know it without reading it: name and
// UID, which is all the record's writes need (the annotation is UID-guarded).
func workflowNamed(t Target) *wfv1.Workflow {
	return &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: t.Workflow, Namespace: t.Namespace, UID: t.WorkflowUID}}
}

// recordOn writes the record of a repair on its Workflow: the Event, then the node's annotation
// (in that order: Decide takes an annotation as proof that the Event exists).
func (r *Repairer) recordOn(ctx context.Context, wf *wfv1.Workflow, rec Record) error {
	if err := r.createEvent(ctx, wf, rec); err != nil {
		return err
	}
	return r.annotateWorkflow(ctx, wf, rec)
}

// completeByTest is step 1 as one JSON patch whose test operations the API server checks
// (completeIfIncomplete). ok is false with a nil error when the task result is not incomplete as
// expected (404, or a failed test: the full path reads and decides), false with the error of
// any other failure.
func (r *Repairer) completeByTest(ctx context.Context, t Target, log *zap.SugaredLogger) (*wfv1.WorkflowTaskResult, bool, error) {
	tr, err := r.argo.ArgoprojV1alpha1().WorkflowTaskResults(t.Namespace).Patch(ctx, t.NodeID, types.JSONPatchType, completeIfIncomplete(t, r.opts.Scope.ControllerInstanceID), r.patchOptions())
	switch {
	case apierrors.IsNotFound(err), apierrors.IsInvalid(err):
		log.Debugw("task result not incomplete as expected: full path", zap.Error(err))
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("completing task result %s/%s: %w", t.Namespace, t.NodeID, err)
	}
	return tr, true, nil
}

// completeIfIncomplete is the JSON patch of fastComplete's step 2.
func completeIfIncomplete(t Target, instanceID string) []byte {
	expected := map[string]string{
		argoworkflow.LabelWorkflow:               t.Workflow,
		argoworkflow.LabelReportOutputsCompleted: "false",
	}
	if instanceID != "" {
		expected[argoworkflow.LabelInstanceID] = instanceID
	}
	completed := "/metadata/labels/" + jsonPointerEscape(argoworkflow.LabelReportOutputsCompleted)
	ops := []map[string]any{
		{"op": "test", "path": "/metadata/labels", "value": expected},
		{"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": string(t.WorkflowUID)},
		{"op": "replace", "path": completed, "value": "true"},
		{"op": "add", "path": "/metadata/labels/" + jsonPointerEscape(argoworkflow.LabelRepaired), "value": string(CompleteTaskResult)},
	}
	b, _ := json.Marshal(ops) // maps of strings: cannot fail
	return b
}

// jsonPointerEscape escapes a key for a JSON pointer (RFC 6901).
func jsonPointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
