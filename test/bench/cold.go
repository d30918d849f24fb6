//go:build e2e

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"function/internal/localcluster/cesink"
	"function/internal/localcluster/scenario"
)

// captured is a real delete event of a workflow pod whose task result waits, kept unhandled.
type captured struct {
	v   victim
	raw *cesink.Request
}

type coldTrial struct {
	Listening, Ready, FirstEvent time.Duration // from just before exec
	Status                       int
	Repaired                     bool
	AtReady, Idle                memory
}

type coldResult struct {
	Binary      string
	BinaryBytes int64
	BuildTook   time.Duration
	Trials      []coldTrial
}

// runCold execs the function binary once per captured event: exec → first HTTP answer →
// /health/readiness 200 → the captured delete event (replayed as the adapter sent it) answered;
// memory at readiness and after one idle second.
func runCold(ctx context.Context, e *env, bin, kubeconfig, logDir, ns string, events []captured) ([]coldTrial, error) {
	var out []coldTrial
	for i, ce := range events {
		p, err := scenario.ExecFunction(bin, kubeconfig, filepath.Join(logDir, fmt.Sprintf("function-cold-%d.log", i)), map[string]string{"ADH_LOG_LEVEL": "info"})
		if err != nil {
			return nil, err
		}
		listening, ready, err := p.WaitReady(ctx, 20*time.Second, time.Millisecond)
		if err != nil {
			p.Stop()
			return nil, err
		}
		t := coldTrial{Listening: listening.Sub(p.Started), Ready: ready.Sub(p.Started)}
		t.AtReady, _ = readMemory(p.PID())
		t.Status, _, err = cesink.Replay(ctx, p.URL, ce.raw)
		t.FirstEvent = time.Since(p.Started)
		if err != nil {
			p.Stop()
			return nil, fmt.Errorf("posting the first event: %w", err)
		}
		t.Repaired = e.taskResultCompleted(ctx, ns, ce.v.NodeID)
		time.Sleep(time.Second)
		t.Idle, _ = readMemory(p.PID())
		p.Stop()
		out = append(out, t)
	}
	return out, nil
}
