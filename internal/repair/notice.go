// Telling someone: once a run's writes are done, the record it wrote (or the warning) is handed
// to a Notifier (package notify sends it as a CloudEvent), so that a chat or a pager hears of it.

package repair

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// Notifier tells someone outside the cluster about a repair or a warning the function recorded.
// It is called after every write it reports, bounds its own time and keeps its own failures:
// nothing it does changes a repair's result or the answer to the sender.
type Notifier interface {
	// Repaired reports the record written on wf; rec.Actions are every step the run wrote.
	Repaired(ctx context.Context, wf *wfv1.Workflow, rec Record)
	// Warned reports the warning w recorded on pod and its Workflow wf.
	Warned(ctx context.Context, wf *wfv1.Workflow, pod *corev1.Pod, w Warning, dryRun bool)
}

// written is the record a run wrote and the Workflow it is on, kept until the run is over.
type written struct {
	wf  *wfv1.Workflow
	rec Record
}

// wrote keeps the record a run wrote for notifyRepaired.
func (res *Result) wrote(wf *wfv1.Workflow, rec Record) { res.written = &written{wf: wf, rec: rec} }

// notifyRepaired hands the record the run wrote to the Notifier, with every step the run wrote
// (a run that removed the pod completes its task result after recording). Only a run that
// wrote a record tells: one notification per repaired node, as one Kubernetes Event.
func (r *Repairer) notifyRepaired(ctx context.Context, res Result) {
	if r.opts.Notifier == nil || res.written == nil {
		return
	}
	rec := res.written.rec
	rec.Actions = slices.Clone(rec.Actions)
	for _, a := range res.Done {
		if !slices.Contains(rec.Actions, string(a)) {
			rec.Actions = append(rec.Actions, string(a))
		}
	}
	r.opts.Notifier.Repaired(ctx, res.written.wf, rec)
}

// notifyWarned hands a warning just written on wf to the Notifier.
func (r *Repairer) notifyWarned(ctx context.Context, wf *wfv1.Workflow, pod *corev1.Pod, w Warning) {
	if r.opts.Notifier != nil {
		r.opts.Notifier.Warned(ctx, wf, pod, w, r.opts.DryRun)
	}
}
