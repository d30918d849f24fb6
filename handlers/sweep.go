package handlers

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
	"knative.dev/pkg/logging"

	"function/eventing"
	"function/internal/sweep"
)

// sweep runs the safety-net scan on a PingSource tick: one run at a time (the Lease), bounded by
// the budget, resuming where the previous tick stopped.
func (h *Handler) sweep(ctx context.Context, s *eventing.Sweep) error {
	log := logging.FromContext(ctx)
	if h.o.Sweeper == nil || h.o.SweepLease == nil {
		log.Warnw("sweep requested but not configured")
		return nil
	}
	from, err := h.o.SweepLease.Acquire(ctx, h.o.SweepBudget+sweepSlack, time.Now())
	if errors.Is(err, sweep.ErrHeld) {
		log.Infow("sweep skipped", zap.String("why", err.Error()))
		return nil
	}
	if err != nil {
		return err
	}
	term := h.o.SweepBudget + sweepSlack
	rep := h.o.Sweeper.Run(ctx, sweep.Options{From: from, Budget: h.o.SweepBudget, CheckpointEvery: sweepCheckpointEvery,
		Checkpoint: func(cur sweep.Cursor) error { return h.o.SweepLease.Checkpoint(ctx, cur, term, time.Now()) }})
	// Released even when the event's deadline has passed, so the next tick need not wait for
	// the Lease to expire.
	relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	relErr := h.o.SweepLease.Release(relCtx, rep.Next)
	for _, key := range rep.Skipped {
		log.Warnw("sweep skipped a workflow: runs kept stopping on it (over the budget, or the process killed)", zap.String("workflow", key),
			zap.Int("stalls", sweep.MaxStalls))
	}
	for _, f := range rep.Findings {
		if f.Stuck() {
			log.Infow("sweep found a stuck workflow", zap.String("workflow", f.Target.Namespace+"/"+f.Target.Workflow),
				zap.String("node", f.Target.NodeID), zap.String("pod", f.Target.PodName), zap.String("podState", f.PodState),
				zap.String("why", f.Why), zap.Any("actions", f.Result.Plan.Actions), zap.Bool("dryRun", f.Result.DryRun))
		}
	}
	h.o.Metrics.Sweep(rep.Duration, rep.Workflows, rep.Stuck(), rep.Next.Zero())
	log.Infow("sweep done", zap.Int("workflows", rep.Workflows), zap.Int("candidates", len(rep.Findings)), zap.Int("stuck", rep.Stuck()),
		zap.Duration("duration", rep.Duration), zap.Bool("complete", rep.Next.Zero()), zap.Int("errors", len(rep.Errors)))
	return errors.Join(append(rep.Errors, relErr)...)
}
