//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"function/internal/localcluster/apitap"
	"function/internal/localcluster/scenario"
	"function/test/bench/fixture"
)

// compressedRun is one repair of a 5,000-node compressed workflow on the real API server.
type compressedRun struct {
	Handle   time.Duration // whole Handle
	Decide   time.Duration // Handle start → first write sent (reads + inflating + decision)
	Repair   time.Duration // Handle start → task result patch answered (decide and repair)
	Status   int
	Calls    []apitap.Call
	Repaired bool
}

type compressedResult struct {
	Nodes, NodesJSON, Compressed, ObjectBytes int
	Runs                                      []compressedRun
}

// foreignInstance labels the big workflows as another controller's, so the running Argo
// controller leaves them alone; the in-process handler is configured with that instance ID.
const foreignInstance = "bench-foreign"

// runCompressed creates `runs` Running workflows with n nodes in status.compressedNodes (and each
// one's incomplete task result) and hands the in-process handler a delete event for the pod of
// the Running node of each, timing the whole Handle.
func runCompressed(ctx context.Context, e *env, ip *scenario.InProcess, ns string, n, runs int) (*compressedResult, error) {
	if err := e.c.EnsureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	res := &compressedResult{Nodes: n}
	for i := 0; i < runs; i++ {
		big, err := fixture.BigWorkflow(ns, fmt.Sprintf("big-%d", i), n, foreignInstance)
		if err != nil {
			return nil, err
		}
		res.NodesJSON, res.Compressed = big.NodesJSON, big.Compressed
		big.Workflow.UID = ""
		wf, err := e.argo.ArgoprojV1alpha1().Workflows(ns).Create(ctx, big.Workflow, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("creating %d-node workflow: %w", n, err)
		}
		if b, err := json.Marshal(wf); err == nil {
			res.ObjectBytes = len(b)
		}
		if _, err := e.argo.ArgoprojV1alpha1().WorkflowTaskResults(ns).Create(ctx, fixture.TaskResult(wf, big.NodeID), metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("creating task result: %w", err)
		}
		ev, err := fixture.PodDeleteEvent(wf, big.NodeID, big.PodName)
		if err != nil {
			return nil, err
		}
		log := &apitap.Log{}
		start := time.Now()
		hres := ip.Handler.Handle(apitap.WithLog(ctx, log), ev)
		r := compressedRun{Handle: time.Since(start), Status: resultStatus(hres), Calls: log.Calls()}
		r.Decide = r.Handle
		for _, c := range r.Calls {
			if c.Method != http.MethodGet {
				r.Decide = c.Start.Sub(start)
				break
			}
		}
		r.Repair = -1
		if t, ok := patchedAt(r.Calls); ok {
			r.Repair = t.Sub(start)
		}
		r.Repaired = e.taskResultCompleted(ctx, ns, big.NodeID)
		res.Runs = append(res.Runs, r)
	}
	return res, nil
}
