package repair

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/handlers/record"
	"function/workflowmeta"
)

// newRecord describes the repair about to be made. When the plan only finishes the recording of
// an earlier delivery, the record is the one that delivery left on the task result.
func (r *Repairer) newRecord(t Target, obs *Observation, p Plan) record.Record {
	if len(p.Actions) == 0 && obs.TaskResult != nil {
		if prev, err := record.Parse(obs.TaskResult.Annotations[workflowmeta.AnnotationRepaired]); err == nil && prev.NodeID != "" {
			return prev
		}
	}
	actions := make([]string, len(p.Actions))
	for i, a := range p.Actions {
		actions[i] = string(a)
	}
	reason, message := t.Reason, t.Message
	if reason == "" {
		reason = record.UnknownReason
	}
	// A warning recorded on the workflow for this pod (the pod itself may be gone with its
	// annotation) names the disruption better than the Kubernetes-side cause.
	if w, ok := record.Warnings(obs.Workflow)[t.PodName]; ok && !strings.Contains(message, w.Message) {
		reason, message = w.Reason, withCause(w.Message, reason)
	}
	return record.Record{
		Pod: t.PodName, PodUID: string(t.PodUID), NodeID: t.NodeID,
		Reason: reason, Message: message, Actions: actions, Trigger: t.Trigger,
		Time: r.Now().UTC().Truncate(1e9), DryRun: r.DryRun,
	}
}

// createEvent creates the Kubernetes Event for rec. It runs before the annotation is written, so
// "annotation present" implies "Event exists", which is what Decide relies on to skip recording.
// The name is deterministic: AlreadyExists (a re-delivered event) is success.
func (r *Repairer) createEvent(ctx context.Context, wf *wfv1.Workflow, rec record.Record) error {
	ev := record.Event(wf, rec, r.Host)
	_, err := r.Kube.CoreV1().Events(wf.Namespace).Create(ctx, ev, r.createOptions())
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating event %s/%s for workflow %s: %w", ev.Namespace, ev.Name, wf.Name, err)
	}
	return nil
}

// annotateWorkflow adds rec to the Workflow's disruption annotation. The patch races the
// controller, which updates the workflow right after our task-result write; on 409 only the
// workflow is re-read (not the whole observation), up to Attempts times.
func (r *Repairer) annotateWorkflow(ctx context.Context, wf *wfv1.Workflow, rec record.Record) error {
	what := fmt.Sprintf("recording disruption of node %s on workflow %s/%s", rec.NodeID, wf.Namespace, wf.Name)
	for attempt := 1; ; attempt++ {
		patch := mergePatch(patchMeta{
			ResourceVersion: wf.ResourceVersion,
			Annotations:     map[string]string{workflowmeta.AnnotationDisruption: record.AnnotationWith(wf, rec)},
		}, nil)
		_, err := r.Argo.ArgoprojV1alpha1().Workflows(wf.Namespace).Patch(ctx, wf.Name, types.MergePatchType, patch, r.patchOptions())
		if !apierrors.IsConflict(err) || attempt >= max(r.Attempts, 1) {
			return writeErr(err, what)
		}
		latest, err := r.Argo.ArgoprojV1alpha1().Workflows(wf.Namespace).Get(ctx, wf.Name, metav1.GetOptions{})
		if err != nil {
			return writeErr(err, what)
		}
		if record.HasRecord(latest, rec.NodeID) {
			return nil
		}
		wf = latest
	}
}
