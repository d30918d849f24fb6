// Package repair moves a workflow on after Kubernetes took one of its pods away, with the
// smallest safe write: the ladder of the README and docs/safety.md. It is called alike by
// the event handler, a periodic sweep and the sweep command; it keeps no state between calls —
// everything it needs is read from the cluster, and every write it makes is idempotent.
package repair

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/logging"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"

	"function/internal/metrics"
)

// ErrConflictsExhausted means every attempt lost a race (409 Conflict or AlreadyExists) with
// another writer; the caller should retry later (the event handler answers 503).
var ErrConflictsExhausted = errors.New("conflicting writes: retries exhausted")

// Options are a Repairer's settings; New fills in the defaults of the zero values.
type Options struct {
	Policy
	// DryRun sends every write with dryRun=All: the API server validates it, nothing changes.
	DryRun bool
	// Attempts bounds observe→decide→write rounds lost to conflicts (0: 5).
	Attempts int
	// Metrics counts the accepted steps (nil: not counted).
	Metrics *metrics.Recorder
	// FollowUps re-runs, after the event was answered, the repairs whose task result waits for
	// the controller to see the pod go (nil: none; the pod's delete event or the sweep finishes).
	FollowUps *FollowUps
	// Host names this instance in Kubernetes Events ("": the host name).
	Host string
	// Notifier is told of each record and warning written, once the run's writes are done
	// (nil: nobody).
	Notifier Notifier
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Repairer holds the clients and settings; it is safe for concurrent use.
type Repairer struct {
	kube kubernetes.Interface
	argo argoclient.Interface
	opts Options
}

// Result is what one Repair did.
type Result struct {
	Target Target
	Plan   Plan
	// Done lists the actions whose writes the API server accepted (dry run included).
	Done     []Action
	Recorded bool
	DryRun   bool
	Attempts int
	// written is the record this run wrote, for the Notifier.
	written *written
}

// New returns a Repairer over the clients.
func New(kube kubernetes.Interface, argo argoclient.Interface, o Options) *Repairer {
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Repairer{kube: kube, argo: argo, opts: o}
}

// Now is the Repairer's clock.
func (r *Repairer) Now() time.Time { return r.opts.Now() }

// Host names this instance in Kubernetes Events and on the sweep's Lease.
func (r *Repairer) Host() string { return r.opts.Host }

// DryRun reports whether writes are sent as server-side dry runs.
func (r *Repairer) DryRun() bool { return r.opts.DryRun }

// StopFollowUps ends the follow-ups still waiting for the controller once their runs in progress
// finish (the sweep takes them).
func (r *Repairer) StopFollowUps(ctx context.Context) {
	if r.opts.FollowUps != nil {
		r.opts.FollowUps.Stop(ctx)
	}
}

// Repair observes the target, decides, and applies the plan. A lost race re-reads and
// re-decides, up to Attempts times. A pod removed by the run, or a gone pod whose last status
// was misleading, makes the task result wait for the controller to see the pod go: the target is
// handed to FollowUps, and the event answered. An error wraps the object it is about; a nil
// error with an empty plan means there was nothing (more) to do. A record written is then told
// to the Notifier, whatever the error: a re-delivery would not write it again.
func (r *Repairer) Repair(ctx context.Context, t Target) (Result, error) {
	res, err := r.repair(ctx, t)
	r.notifyRepaired(ctx, res)
	return res, err
}

// repair is Repair without the notification.
func (r *Repairer) repair(ctx context.Context, t Target) (Result, error) {
	log := r.targetLog(ctx, t)
	if why := podNameNotNodes(t); why != "" {
		log.Infow("not ours: nothing written", zap.String("why", why))
		r.opts.Metrics.NotOurs()
		return Result{Target: t, DryRun: r.opts.DryRun, Plan: Plan{Skip: why, NotOurs: true}}, nil
	}
	if fastEligible(t) {
		res, done, err := r.fastComplete(ctx, t, log)
		if done {
			r.shortPathDone(log, t, res, err, "fastPath")
			return res, err
		}
	}
	return r.repairObserved(ctx, t, log)
}

// repairObserved is the full path: observe, decide, apply, again after a lost race (up to
// Attempts) and once more after the pod was made to go, for its task result.
func (r *Repairer) repairObserved(ctx context.Context, t Target, log *zap.SugaredLogger) (Result, error) {
	res := Result{Target: t, DryRun: r.opts.DryRun}
	conflicts, removed := 0, false
	var applied Plan // the plans of the runs applied so far
	for {
		res.Attempts++
		obs, err := r.Observe(ctx, t)
		if err != nil {
			return res, err
		}
		plan := Decide(t, obs, r.opts.Policy, r.opts.Now())
		r.explain(ctx, log, t, plan)
		res.Plan = applied.then(plan)
		if plan.Empty() {
			return res, nil
		}
		log.Infow("repair plan", zap.Any("actions", plan.Actions), zap.Bool("record", plan.Record), zap.Int("attempt", res.Attempts), zap.String("note", plan.Note))
		done := len(res.Done)
		err = r.apply(ctx, t, obs, plan, &res)
		switch {
		case errors.Is(err, errRecreated):
			log.Infow("completion undone: the pod was re-created under the same name", zap.Error(err))
			res.Plan.Skip = err.Error()
			return res, nil
		case errors.Is(err, errLostRace):
			if conflicts++; conflicts >= max(r.opts.Attempts, 1) {
				return res, fmt.Errorf("%s: %w after %d attempts", t, ErrConflictsExhausted, conflicts)
			}
			log.Infow("lost a race, re-reading", zap.Error(err))
			continue
		case err != nil:
			return res, err
		}
		r.repaired(log, t, res.Done[done:], res.Recorded)
		applied = res.Plan
		if !removesPod(plan) || r.opts.DryRun || removed {
			return res, nil
		}
		// The pod is going: read again for its task result, which waits for the controller to
		// see the pod go when its last status could be taken for the step's outcome.
		removed = true
		t.StatusMisleading = t.StatusMisleading || !statusIsOutcome(obs.Pod) && PodFinished(obs.Pod)
	}
}

// explain logs why a plan writes nothing, and hands a target that waits for the controller to
// the follow-ups.
func (r *Repairer) explain(ctx context.Context, log *zap.SugaredLogger, t Target, plan Plan) {
	switch {
	case plan.NotOurs:
		log.Infow("not ours: nothing written", zap.String("why", plan.Skip))
		r.opts.Metrics.NotOurs()
	case plan.Await && inFollowUp(ctx):
		log.Debugw("still waiting for the controller", zap.String("why", plan.Skip))
	case plan.Await && r.opts.FollowUps.schedule(ctx, t, func(ctx context.Context) bool {
		res, err := r.Repair(ctx, t)
		return err != nil || res.Plan.Await
	}):
		log.Infow("waiting for the controller to see the pod go: followed up", zap.String("why", plan.Skip))
	case plan.Await:
		log.Infow("left to the controller and the sweep", zap.String("why", plan.Skip))
	case plan.Empty():
		log.Debugw("nothing to do", zap.String("skip", plan.Skip), zap.String("note", plan.Note))
	}
}

// targetLog is the logger of one target's repair, with the fields every line of it carries.
func (r *Repairer) targetLog(ctx context.Context, t Target) *zap.SugaredLogger {
	return logging.FromContext(ctx).With(
		zap.String("workflow", t.Namespace+"/"+t.Workflow), zap.String("node", t.NodeID),
		zap.String("pod", t.PodName), zap.String("reason", t.Reason), zap.Bool("dryRun", r.opts.DryRun))
}

// shortPathDone logs and counts what a short path (path: its log field) wrote, when it succeeded.
func (r *Repairer) shortPathDone(log *zap.SugaredLogger, t Target, res Result, err error, path string) {
	if err == nil {
		r.repaired(log, t, res.Done, res.Recorded, zap.Bool(path, true))
	}
}

// repaired logs and counts the actions a run wrote.
func (r *Repairer) repaired(log *zap.SugaredLogger, t Target, done []Action, recorded bool, fields ...any) {
	log.Infow("repaired", append([]any{zap.Any("actions", done), zap.Bool("recorded", recorded)}, fields...)...)
	for _, a := range done {
		r.opts.Metrics.Repair(string(a), t.Reason, r.opts.DryRun)
	}
}

// removesPod reports whether the plan makes the pod go: deleted, or released from the only
// finalizer that held its deletion.
func removesPod(p Plan) bool {
	return slices.Contains(p.Actions, DeleteOrphanedPod) || slices.Contains(p.Actions, ReleaseStatusFinalizer)
}

// then is the plan of a run that went on after p: the actions of both, recorded if either was.
func (p Plan) then(next Plan) Plan {
	next.Actions = append(slices.Clone(p.Actions), next.Actions...)
	next.Record = p.Record || next.Record
	if len(next.Actions) > 0 || next.Record {
		next.Skip = ""
	}
	return next
}

// apply runs the plan's steps in ladder order, then records. Each step writes a different
// object, so in dry run each is validated against that object's real state. The last-resort node
// patch carries the record annotation itself: after it the node is no longer Running, and a
// re-delivery could not tell that a record is missing.
func (r *Repairer) apply(ctx context.Context, t Target, obs *Observation, plan Plan, res *Result) error {
	rec := r.newRecord(t, obs, plan)
	var completed *wfv1.WorkflowTaskResult // a completion a failed pod removal must undo
	for _, a := range plan.Actions {
		if a == MarkNodeError {
			continue // written with the record, below
		}
		tr, err := r.step(ctx, t, obs, a, rec)
		if tr != nil {
			completed = tr
		}
		if err != nil {
			if completed != nil && obs.Pod != nil && (a == ReleaseStatusFinalizer || a == DeleteOrphanedPod) {
				err = r.putGateBack(ctx, completed, res, err)
			}
			return err
		}
		res.Done = append(res.Done, a)
	}
	return r.writeRecord(ctx, t, obs, plan, rec, res)
}

// step writes one action of a plan other than MarkNodeError; tr is the task result it completed
// or created.
func (r *Repairer) step(ctx context.Context, t Target, obs *Observation, a Action, rec Record) (tr *wfv1.WorkflowTaskResult, err error) {
	switch a {
	case ReleaseStatusFinalizer:
		released, err := r.releaseStatusFinalizer(ctx, obs.Pod, rec)
		if err == nil && released != nil && released.Name != "" {
			obs.Pod = released // a deletion that follows is preconditioned on this version
		}
		return nil, err
	case DeleteOrphanedPod:
		return nil, r.deleteOrphanedPod(ctx, obs.Pod)
	case CompleteTaskResult:
		tr, err = r.completeTaskResult(ctx, obs.TaskResult, rec)
	case CreateTaskResult:
		tr, err = r.createTaskResult(ctx, t, obs.Workflow, rec)
	}
	if err == nil && obs.Pod == nil {
		err = r.guardRecreation(ctx, t, tr)
	}
	return tr, err
}

// putGateBack undoes our completion after the pod could not be made to go: the pod stays, and
// PodGC would later set it Failed, which the controller reads as success. It returns the error
// to answer.
func (r *Repairer) putGateBack(ctx context.Context, completed *wfv1.WorkflowTaskResult, res *Result, err error) error {
	if uerr := r.undoCompletion(ctx, completed); uerr != nil && !r.opts.DryRun {
		return errors.Join(err, fmt.Errorf("undoing the completion of task result %s/%s: %w", completed.Namespace, completed.Name, uerr))
	}
	res.Done = slices.DeleteFunc(res.Done, func(d Action) bool { return d == CompleteTaskResult || d == CreateTaskResult })
	return err
}

// writeRecord writes the plan's record: the Kubernetes Event, then the workflow's annotation, with the
// node marked Error in the same write when the plan says so.
func (r *Repairer) writeRecord(ctx context.Context, t Target, obs *Observation, plan Plan, rec Record, res *Result) error {
	if plan.Record {
		if err := r.createEvent(ctx, obs.Workflow, rec); err != nil {
			return err
		}
	}
	switch {
	case slices.Contains(plan.Actions, MarkNodeError):
		if err := r.markNodeError(ctx, obs.Workflow, t.NodeID, rec, plan.Record); err != nil {
			return err
		}
		res.Done = append(res.Done, MarkNodeError)
	case plan.Record:
		if err := r.annotateWorkflow(ctx, obs.Workflow, rec); err != nil {
			return err
		}
	}
	if plan.Record {
		res.wrote(obs.Workflow, rec)
	}
	res.Recorded = res.Recorded || plan.Record
	return nil
}
