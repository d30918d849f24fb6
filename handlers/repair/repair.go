// Package repair moves a workflow on after Kubernetes took one of its pods away, with the
// smallest safe write: the ladder of ../shared/design/argo-controller.md. It is called alike by
// the event handler, a periodic sweep and the audit command; it keeps no state between calls —
// everything it needs is read from the cluster, and every write it makes is idempotent.
package repair

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/logging"

	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"

	"function/metrics"
)

// ErrConflictsExhausted means every attempt lost a race (409 Conflict or AlreadyExists) with
// another writer; the caller should retry later (the event handler answers 503).
var ErrConflictsExhausted = errors.New("conflicting writes: retries exhausted")

// Repairer holds the clients and settings; it is safe for concurrent use.
type Repairer struct {
	Kube kubernetes.Interface
	Argo argoclient.Interface
	Policy
	// DryRun sends every write with dryRun=All: the API server validates it, nothing changes.
	DryRun bool
	// Attempts bounds observe→decide→write rounds lost to conflicts.
	Attempts int
	// InstanceID is written on task results we create, as the executor does.
	InstanceID string
	// Now is the clock (tests set it).
	Now func() time.Time
	// Host names this instance in Kubernetes Events.
	Host string
	// Metrics counts the accepted steps (nil: not counted).
	Metrics *metrics.Recorder
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
}

// New returns a Repairer with defaults for the clock and host name.
func New(kube kubernetes.Interface, argo argoclient.Interface, pol Policy) *Repairer {
	host, _ := os.Hostname()
	return &Repairer{Kube: kube, Argo: argo, Policy: pol, Attempts: 5, Now: time.Now, Host: host}
}

// Repair observes the target, decides, and applies the plan. A lost race re-reads and
// re-decides, up to Attempts times. An error wraps the object it is about; a nil error with an
// empty plan means there was nothing (more) to do.
func (r *Repairer) Repair(ctx context.Context, t Target) (Result, error) {
	log := logging.FromContext(ctx).With(
		zap.String("workflow", t.Namespace+"/"+t.Workflow), zap.String("node", t.NodeID),
		zap.String("pod", t.PodName), zap.String("reason", t.Reason), zap.Bool("dryRun", r.DryRun))
	if fastEligible(t) {
		res, done, err := r.fastComplete(ctx, t, log)
		if done {
			if err == nil {
				log.Infow("repaired", zap.Any("actions", res.Done), zap.Bool("recorded", res.Recorded), zap.Bool("fastPath", true))
				for _, a := range res.Done {
					r.Metrics.Repair(string(a), t.Reason, r.DryRun)
				}
			}
			return res, err
		}
	}
	res := Result{Target: t, DryRun: r.DryRun}
	for res.Attempts < max(r.Attempts, 1) {
		res.Attempts++
		obs, err := r.Observe(ctx, t)
		if err != nil {
			return res, err
		}
		res.Plan = Decide(t, obs, r.Policy, r.Now())
		if res.Plan.Empty() {
			log.Debugw("nothing to do", zap.String("skip", res.Plan.Skip), zap.String("note", res.Plan.Note))
			return res, nil
		}
		log.Infow("repair plan", zap.Any("actions", res.Plan.Actions), zap.Bool("record", res.Plan.Record), zap.Int("attempt", res.Attempts))
		err = r.apply(ctx, t, obs, &res)
		if errors.Is(err, errLostRace) {
			log.Infow("lost a race, re-reading", zap.Error(err))
			continue
		}
		if err != nil {
			return res, err
		}
		log.Infow("repaired", zap.Any("actions", res.Done), zap.Bool("recorded", res.Recorded))
		for _, a := range res.Done {
			r.Metrics.Repair(string(a), t.Reason, r.DryRun)
		}
		return res, nil
	}
	return res, fmt.Errorf("%s: %w after %d attempts", t, ErrConflictsExhausted, res.Attempts)
}

// apply runs the plan's steps in ladder order, then records. Each step writes a different
// object, so in dry run each is validated against that object's real state. The last-resort node
// patch carries the record annotation itself: after it the node is no longer Running, and a
// re-delivery could not tell that a record is missing.
func (r *Repairer) apply(ctx context.Context, t Target, obs *Observation, res *Result) error {
	rec := r.newRecord(t, obs, res.Plan)
	markNode := false
	for _, a := range res.Plan.Actions {
		var err error
		switch a {
		case ReleaseStatusFinalizer:
			err = r.releaseStatusFinalizer(ctx, obs.Pod, rec)
		case DeleteOrphanedPod:
			err = r.deleteOrphanedPod(ctx, obs.Pod)
		case CompleteTaskResult:
			err = r.completeTaskResult(ctx, obs.TaskResult, rec)
		case CreateTaskResult:
			err = r.createTaskResult(ctx, t, obs.Workflow, rec)
		case MarkNodeError:
			markNode = true
			continue
		}
		if err != nil {
			return err
		}
		res.Done = append(res.Done, a)
	}
	if res.Plan.Record {
		if err := r.createEvent(ctx, obs.Workflow, rec); err != nil {
			return err
		}
	}
	switch {
	case markNode:
		if err := r.markNodeError(ctx, obs.Workflow, t.NodeID, rec, res.Plan.Record); err != nil {
			return err
		}
		res.Done = append(res.Done, MarkNodeError)
	case res.Plan.Record:
		if err := r.annotateWorkflow(ctx, obs.Workflow, rec); err != nil {
			return err
		}
	}
	res.Recorded = res.Plan.Record
	return nil
}
