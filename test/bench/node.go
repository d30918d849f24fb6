//go:build e2e

package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"function/config"
	"function/internal/localcluster"
)

const nsNode = "bench-node"

// nodeResult is the "whole node lost" case: one Karpenter-managed Node with n running one-step
// workflows deleted, its machine gone (kwok stopped), the Node's delete event delivered by the
// real adapter to the in-process handler.
type nodeResult struct {
	Node      string
	Pods      int
	Workers   int
	QPS       float32
	Burst     int
	SetupTook time.Duration
	// Event is the Node delete event's delivery: its answer, handling time and API calls.
	Event   delivery
	Answers []int // the status of every delivery of the delete event (re-deliveries included)
	// DeleteToEvent is the Node delete → the event at the handler.
	DeleteToEvent time.Duration
	// Completed and LeftRunning are, per workflow, the Node delete → its task result completed by
	// the function / the workflow out of Running.
	Completed   map[string]time.Duration
	LeftRunning map[string]time.Duration
	CallsByKey  map[string]int
	Argo        string
}

// runNode deletes a Node carrying n workflow pods and follows what the function does.
func runNode(ctx context.Context, e *env, n int) (*nodeResult, error) {
	ip, err := newInProcess(e.c, "function-node.log", func(cfg *config.Config) {
		cfg.Namespaces = []string{nsNode}
	})
	if err != nil {
		return nil, err
	}
	res := &nodeResult{Node: "bench-karpenter-node", Pods: n, Workers: ip.Config.NodeRepairWorkers, QPS: ip.Config.KubeQPS, Burst: ip.Config.KubeBurst, Argo: e.c.ArgoVersion()}
	if err := e.c.CreateNode(ctx, res.Node); err != nil {
		return nil, err
	}
	// Karpenter's Node: its labels, and the NodeClaim that owns it, which is being deleted when the
	// Node goes (what confirms the machine is terminated: docs/safety.md, rule 1).
	const claim = "bench-claim"
	if err := e.c.AdoptNode(ctx, claim, res.Node); err != nil {
		return nil, err
	}
	defer func() { _ = e.c.ReleaseNodeClaim(context.Background(), claim) }()
	s, err := startSink(ip.Handler)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := e.c.StartAdapterFor(s.URL, []string{nsNode}, []localcluster.AdapterResource{{Version: "v1", Resource: "nodes"}}); err != nil {
		return nil, err
	}
	defer e.c.StopAdapter()
	vs, took, err := e.prepareOn(ctx, nsNode, "node", n, res.Node)
	if err != nil {
		return nil, err
	}
	res.SetupTook = took
	tr, stopTracking := e.track(nsNode)
	defer stopTracking()
	waitGrace(ctx, vs)
	waitQuiet(ctx, s.Last, 2*time.Second, 60*time.Second)

	// The machine is gone: nothing reports for its pods any more.
	e.c.StopKwok()
	defer func() {
		if err := e.c.StartKwok(); err != nil {
			e.logf("node: restarting kwok: %v", err)
		}
	}()
	events := s.expect(res.Node)
	if err := e.c.DeleteNodeClaim(ctx, claim); err != nil {
		return nil, err
	}
	t0 := time.Now()
	tr.begin(t0)
	if err := e.kube.CoreV1().Nodes().Delete(ctx, res.Node, metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	e.logf("node: Node %s with %d workflow pods deleted", res.Node, n)
	select {
	case d := <-events:
		for _, ev := range d.Events {
			res.Answers = append(res.Answers, ev.Status)
		}
		res.Event = d.Events[len(d.Events)-1]
		res.DeleteToEvent = res.Event.Recv.Sub(t0)
	case <-time.After(60 * time.Second):
		return res, fmt.Errorf("node: no delete event for Node %s within 60 s", res.Node)
	}
	tr.waitAll(ctx, n, 3*time.Minute, nil)
	res.Completed, res.LeftRunning, _ = tr.results(nil)
	res.CallsByKey = map[string]int{}
	for _, c := range res.Event.Calls {
		res.CallsByKey[c.Key()]++
	}
	e.logf("node: answer %d after %.2fs, %d calls; %d/%d task results completed, %d/%d workflows left Running",
		res.Event.Status, res.Event.Done.Sub(res.Event.Recv).Seconds(), len(res.Event.Calls), len(res.Completed), n, len(res.LeftRunning), n)
	return res, nil
}

// quantiles returns the p50, p99 and max of the durations, in that order.
func quantiles(m map[string]time.Duration) (p50, p99, maxD time.Duration) {
	ds := make([]time.Duration, 0, len(m))
	for _, d := range m {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return percentile(ds, 50), percentile(ds, 99), maxDur(ds)
}
