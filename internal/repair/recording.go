package repair

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/logging"

	"function/internal/argoworkflow"
	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// newRecord describes the repair about to be made. When the plan only finishes the recording of
// an earlier delivery, the record is the one that delivery left on the task result.
func (r *Repairer) newRecord(t Target, obs *Observation, p Plan) Record {
	actions := make([]string, len(p.Actions))
	for i, a := range p.Actions {
		actions[i] = string(a)
	}
	if len(p.Actions) == 0 && obs.TaskResult != nil {
		if prev, err := Parse(obs.TaskResult.Annotations[argoworkflow.AnnotationRepaired]); err == nil && prev.NodeID != "" {
			return prev
		}
		// The four-call path marks the task result with a label only: the record is rebuilt
		// from the signal, with the step the label names.
		if step := obs.TaskResult.Labels[argoworkflow.LabelRepaired]; step != "" {
			actions = []string{step}
		}
	}
	reason, message := t.Reason, t.Message
	if reason == "" {
		reason = UnknownReason
	}
	// A warning recorded on the workflow for this pod (the pod itself may be gone with its
	// annotation) names the disruption better than the Kubernetes-side cause.
	if w, ok := warningOf(obs.Workflow, t.PodName); ok && !strings.Contains(message, w.Message) {
		reason, message = w.Reason, withCause(w.Message, reason)
	}
	return Record{
		Pod: t.PodName, PodUID: string(t.PodUID), NodeID: t.NodeID,
		Reason: reason, Message: message, Actions: actions, Trigger: t.Trigger,
		Time: r.opts.Now().UTC().Truncate(1e9), DryRun: r.opts.DryRun,
	}
}

// createEvent creates the Kubernetes Event for rec. It runs before the annotation is written, so
// "annotation present" implies "Event exists", which is what Decide relies on to skip recording.
// The name is deterministic: AlreadyExists (a re-delivered event) is success.
func (r *Repairer) createEvent(ctx context.Context, wf *wfv1.Workflow, rec Record) error {
	ev := Event(wf, rec, r.opts.Host)
	_, err := r.kube.CoreV1().Events(wf.Namespace).Create(ctx, ev, r.createOptions())
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating event %s/%s for workflow %s: %w", ev.Namespace, ev.Name, wf.Name, err)
	}
	return nil
}

// annotateWorkflow writes rec as the node's own annotation on the Workflow. The key is ours and
// one per node, so the merge patch needs no read of the other records and no resourceVersion: it
// cannot lose anyone's update (the controller, whose full Update races it right after our task
// result write, gets 409 and re-applies its own diff), and it never loses a race itself. The UID
// keeps it off a workflow re-created under the same name. A workflow gone meanwhile has nothing
// left to record on. The answer carries the Workflow, so records beyond MaxRecords are
// folded into a count at no extra read; one the API server refuses as too large is folded first.
func (r *Repairer) annotateWorkflow(ctx context.Context, wf *wfv1.Workflow, rec Record) error {
	patch := mergePatch(patchMeta{
		UID:         wf.UID,
		Annotations: map[string]string{AnnotationKey(wf.Name, rec.NodeID): rec.Marshal()},
	}, nil)
	workflows := r.argo.ArgoprojV1alpha1().Workflows(wf.Namespace)
	after, err := workflows.Patch(ctx, wf.Name, types.MergePatchType, patch, r.patchOptions())
	if tooLarge(err) {
		if cur, gerr := workflows.Get(ctx, wf.Name, metav1.GetOptions{}); gerr == nil && cur.UID == wf.UID {
			r.fold(ctx, cur, MaxRecords/2)
			after, err = workflows.Patch(ctx, wf.Name, types.MergePatchType, patch, r.patchOptions())
		}
	}
	switch {
	case apierrors.IsNotFound(err) || wf.UID != "" && (apierrors.IsConflict(err) || uidRefused(err)):
		logging.FromContext(ctx).Infow("record not written: the workflow is gone or was re-created", zap.Error(err))
		return nil
	case err != nil:
		return fmt.Errorf("recording disruption of node %s on workflow %s/%s: %w", rec.NodeID, wf.Namespace, wf.Name, err)
	}
	r.fold(ctx, after, MaxRecords)
	return nil
}

// fold folds the oldest records of wf beyond keep; losing a race to another writer only
// postpones it to the next record.
func (r *Repairer) fold(ctx context.Context, wf *wfv1.Workflow, keep int) {
	patch, ok := FoldPatch(wf, keep)
	if !ok || r.opts.DryRun {
		return
	}
	if _, err := r.argo.ArgoprojV1alpha1().Workflows(wf.Namespace).Patch(ctx, wf.Name, types.MergePatchType, patch, r.patchOptions()); err != nil {
		logging.FromContext(ctx).Infow("records not folded yet", zap.String("workflow", wf.Namespace+"/"+wf.Name), zap.Error(err))
	}
}

// uidRefused reports whether a 422 is the API server refusing our metadata.uid: the workflow of
// that name is another incarnation.
func uidRefused(err error) bool {
	return apierrors.IsInvalid(err) && strings.Contains(err.Error(), "metadata.uid")
}

// tooLarge reports whether a 422 refuses the annotations' size.
func tooLarge(err error) bool {
	return apierrors.IsInvalid(err) && strings.Contains(err.Error(), "metadata.annotations") && strings.Contains(err.Error(), "Too long")
}

func warningOf(wf *wfv1.Workflow, pod string) (Warning, bool) {
	if wf == nil {
		return Warning{}, false
	}
	w, ok := Warnings(wf)[pod]
	return w, ok
}
