//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/metrics"
	"sort"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/config"
	"function/handlers"
	"function/internal/argoworkflow"
	"function/internal/localcluster/apitap"
	"function/internal/lookup"
	"function/test/bench/fixture"
)

const (
	nsScaleIndex  = "bench-scale-index"
	nsScalePair   = "bench-scale-pair"
	nsScaleSingle = "bench-scale-single"
	nsScaleRef    = "bench-scale-ref"

	// scaleLabel marks the many Nodes and NodeClaims of the scale part (to find them by hand).
	scaleLabel = "bench.argo-disruption-handler.dev/scale"
	// fixtureInstance is the instance ID of the EC2 fixture, replaced by the one a message names.
	fixtureInstance = "i-0abc123def4567890"
	// refWorkflow is the workflow whose finished pods the Reference-mode deletes name.
	refWorkflow = "scale-ref"
)

// scaleResult is the "at cluster scale" part: EC2 messages against many machines, EC2's two
// messages for one machine, and Reference-mode deletes of many finished pods.
type scaleResult struct {
	Index *indexResult
	Pair  *pairResult
	Ref   *refResult
}

// message is one event handed to the in-process handler, and what it cost.
type message struct {
	Label    string
	Instance string `json:",omitempty"`
	Status   int
	Took     time.Duration
	Calls    []apitap.Call
	// Allocated is the process's TotalAlloc growth over the handling (runtime.MemStats): every
	// goroutine's allocations, the bench's idle clients' included.
	Allocated uint64
	// HeapBefore and HeapPeak are HeapInuse when the handling began and its highest value during
	// it (sampled every millisecond).
	HeapBefore, HeapPeak uint64
}

// indexResult is row 8a: EC2 messages with n Karpenter Nodes and NodeClaims in the cluster.
type indexResult struct {
	Nodes, Claims int
	SetupTook     time.Duration
	// Cold is the first message after the function started (the instance index empty), Warm an
	// unknown instance 1 s later, Known an instance whose Node exists (no pods on it).
	Cold, Warm, Known message
	CleanupTook       time.Duration
}

// pairResult is row 8b: EC2 `shutting-down` then `terminated` for one Karpenter machine, against
// `terminated` alone for another, each with Pods workflow pods and its Node deleted.
type pairResult struct {
	Pods       int
	SetupTook  time.Duration
	Pair       []message
	Alone      message
	PairDone   int // task results completed by the function, pair's machine
	AloneDone  int
	PairNode   string
	AloneNode  string
	PairFirst  string // the pair's first state
	PairSecond string
}

// refResult is row 8c: one Reference-mode delete per finished pod of one workflow.
type refResult struct {
	Pods       int
	QPS        float32 // the function's client rate (ADH_KUBE_QPS/BURST), which bounds Took
	Burst      int
	SetupTook  time.Duration
	DeleteTook time.Duration
	Took       time.Duration // all events, one after another
	Events     int
	Statuses   map[int]int
	ByCalls    map[int]int
	Sequences  map[string]int
	TotalCalls int
	MaxCalls   int
	Writes     int
	Handle     []time.Duration
	InCalls    []time.Duration // of Handle, waiting for the API server's answers
	Example    message         // the first event
}

// runScale runs the three measurements in turn, each with its own in-process function.
func runScale(ctx context.Context, e *env, o options, step func(string)) (*scaleResult, error) {
	res := &scaleResult{}
	if err := e.c.InstallNodeClaimCRD(ctx); err != nil {
		return res, err
	}
	// The three are independent: one failing does not keep the others from being measured.
	var errs []error
	var err error
	if res.Index, err = runScaleIndex(ctx, e, o.ScaleNodes, step); err != nil {
		errs = append(errs, fmt.Errorf("instance index: %w", err))
	}
	if res.Pair, err = runScalePair(ctx, e, o.ScalePairPods, step); err != nil {
		errs = append(errs, fmt.Errorf("EC2 message pair: %w", err))
	}
	if res.Ref, err = runScaleRef(ctx, e, o.ScalePods, step); err != nil {
		errs = append(errs, fmt.Errorf("reference-mode deletes: %w", err))
	}
	return res, errors.Join(errs...)
}

// ---------- 8a: EC2 messages against thousands of machines ----------

// runScaleIndex creates n Karpenter Nodes and their NodeClaims, then hands a fresh function three
// EC2 `terminated` messages: an unknown instance (its first message: the index is built), another
// unknown one 1 s later, and a known one whose Node exists without pods.
func runScaleIndex(ctx context.Context, e *env, n int, step func(string)) (*indexResult, error) {
	res := &indexResult{Nodes: n, Claims: n}
	if err := e.c.EnsureNamespace(ctx, nsScaleIndex); err != nil {
		return nil, err
	}
	begin := time.Now()
	err := createMachines(ctx, e, n)
	res.SetupTook = time.Since(begin)
	if err == nil {
		e.logf("scale: %d Nodes and %d NodeClaims created in %.1fs", n, n, res.SetupTook.Seconds())
		step(fmt.Sprintf("scale: set-up of %d Nodes and %d NodeClaims", n, n))
		err = indexMessages(ctx, e, res)
	}
	start := time.Now()
	if cerr := deleteMachines(context.WithoutCancel(ctx), e, n); cerr != nil {
		e.logf("scale: removing the Nodes and NodeClaims: %v", cerr)
	}
	res.CleanupTook = time.Since(start)
	step("scale: three EC2 messages against the Karpenter machines, and their removal")
	return res, err
}

// indexMessages hands a fresh function the three EC2 messages of row 8a, 1 s apart.
func indexMessages(ctx context.Context, e *env, res *indexResult) error {
	ip, err := newInProcess(e.c, "function-scale-index.log", func(cfg *config.Config) {
		cfg.Namespaces = []string{nsScaleIndex}
	})
	if err != nil {
		return err
	}
	defer ip.Handler.Stop(context.WithoutCancel(ctx))
	for _, m := range []struct {
		into     *message
		label    string
		instance string
	}{
		{&res.Cold, "unknown instance, first message (index cold)", unknownInstance(1)},
		{&res.Warm, "unknown instance, 1 s later (index warm)", unknownInstance(2)},
		{&res.Known, "known instance, Node present, no workflow pod on it", instanceID(res.Nodes / 2)},
	} {
		ev, err := ec2Message(m.instance, "terminated")
		if err != nil {
			return err
		}
		*m.into = deliverMeasured(ctx, ip.Handler, m.label, ev)
		m.into.Instance = m.instance
		e.logf("scale: %s: answer %d in %s, %d calls (%s), %s allocated", m.label, m.into.Status, ms(m.into.Took), len(m.into.Calls), keys(m.into.Calls), mib(int64(m.into.Allocated)))
		time.Sleep(time.Second)
	}
	return nil
}

// instanceID is the i-th machine's EC2 instance ID ("i-0" and 16 hex digits).
func instanceID(i int) string { return fmt.Sprintf("i-0%016x", uint64(0x5ca1e00000000000)+uint64(i)) }

// unknownInstance is an instance ID no machine of the cluster has.
func unknownInstance(i int) string {
	return fmt.Sprintf("i-0%016x", uint64(0xdead000000000000)+uint64(i))
}

func awsProviderID(instance string) string { return "aws:///eu-west-1a/" + instance }

func scaleNodeName(i int) string { return fmt.Sprintf("scale-node-%05d", i) }

func scaleClaimName(i int) string { return fmt.Sprintf("workflows-%05d", i) }

// createMachines creates n Nodes as Karpenter leaves them (its label and an AWS provider ID), each
// with its NodeClaim. The Nodes carry no kwok annotation: kwok manages only the annotated ones,
// so nothing reports for them, as for machines the bench does not run pods on.
func createMachines(ctx context.Context, e *env, n int) error {
	claim, err := claimTemplate(ctx, e)
	if err != nil {
		return err
	}
	return parallel(n, 16, func(i int) error {
		name, instance := scaleNodeName(i), instanceID(i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				lookup.KarpenterNodeLabel: "workflows", "karpenter.sh/registered": "true", scaleLabel: "true",
			}},
			Spec: corev1.NodeSpec{ProviderID: awsProviderID(instance)},
		}
		if _, err := e.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
		return createClaimLike(ctx, e, claim, scaleClaimName(i), awsProviderID(instance), name)
	})
}

// claimTemplate makes one NodeClaim through localcluster (Karpenter's shape) and returns it
// without its identity. The cluster's own client is limited to 100 requests/s, which would take
// minutes for thousands of NodeClaims; the copies go through the bench's unthrottled client.
func claimTemplate(ctx context.Context, e *env) (*unstructured.Unstructured, error) {
	const name = "workflows-template"
	if err := e.c.CreateNodeClaim(ctx, name, awsProviderID(unknownInstance(0)), "scale-template"); err != nil {
		return nil, err
	}
	u, err := e.dyn.Resource(lookup.NodeClaimGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading nodeclaim %s: %w", name, err)
	}
	if err := e.dyn.Resource(lookup.NodeClaimGVR).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return nil, fmt.Errorf("deleting nodeclaim %s: %w", name, err)
	}
	for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	return u, nil
}

// createClaimLike creates a copy of the template NodeClaim for one machine, then writes its status
// (a subresource) as Karpenter does once the machine registered.
func createClaimLike(ctx context.Context, e *env, tmpl *unstructured.Unstructured, name, providerID, nodeName string) error {
	u := tmpl.DeepCopy()
	u.SetName(name)
	labels := u.GetLabels()
	labels[scaleLabel] = "true"
	u.SetLabels(labels)
	created, err := e.dyn.Resource(lookup.NodeClaimGVR).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating nodeclaim %s: %w", name, err)
	}
	created.Object["status"] = map[string]any{"providerID": providerID, "nodeName": nodeName}
	if _, err := e.dyn.Resource(lookup.NodeClaimGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the status of nodeclaim %s: %w", name, err)
	}
	return nil
}

// deleteMachines removes the n Nodes and NodeClaims, so that what runs next sees the cluster it
// expects (the node lifecycle controller would otherwise count thousands of Nodes that never
// report). One by one in parallel: a DeleteCollection of thousands can outlast the API server's
// request timeout.
func deleteMachines(ctx context.Context, e *env, n int) error {
	return parallel(n, 16, func(i int) error {
		node, claim := scaleNodeName(i), scaleClaimName(i)
		if err := e.kube.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting node %s: %w", node, err)
		}
		if err := e.dyn.Resource(lookup.NodeClaimGVR).Delete(ctx, claim, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting nodeclaim %s: %w", claim, err)
		}
		return nil
	})
}

// ec2Message is the EC2 state-change fixture (TriggerMesh's SQS envelope) for another instance and
// state.
func ec2Message(instance, state string) (event.Event, error) {
	ev, err := fixture.LoadEvent("ec2-terminated-triggermesh-sqs.json")
	if err != nil {
		return ev, err
	}
	data := strings.ReplaceAll(string(ev.Data()), fixtureInstance, instance)
	data = strings.Replace(data, `"state": "terminated"`, `"state": "`+state+`"`, 1)
	if !strings.Contains(data, `"instance-id": "`+instance+`"`) || !strings.Contains(data, `"state": "`+state+`"`) {
		return ev, fmt.Errorf("the EC2 fixture no longer has the instance %s or the state line the bench replaces", fixtureInstance)
	}
	ev.DataEncoded = []byte(data)
	ev.SetID(fmt.Sprintf("bench-scale-%s-%s", instance, state))
	ev.SetTime(time.Now())
	return ev, nil
}

// deliverMeasured hands one event to the handler after a collection, with its calls, its time,
// the bytes the process allocated meanwhile and the peak of the heap in use.
func deliverMeasured(ctx context.Context, h *handlers.Handler, label string, ev event.Event) message {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := watchHeap()
	log := &apitap.Log{}
	start := time.Now()
	hres := h.Handle(apitap.WithLog(ctx, log), ev)
	took := time.Since(start)
	heapPeak := peak()
	runtime.ReadMemStats(&after)
	return message{Label: label, Status: resultStatus(hres), Took: took, Calls: log.Calls(),
		Allocated: after.TotalAlloc - before.TotalAlloc, HeapBefore: before.HeapInuse, HeapPeak: max(heapPeak, after.HeapInuse)}
}

// watchHeap samples HeapInuse (runtime/metrics: heap objects + unused heap) every millisecond
// until the returned function is called, which returns the highest value seen. A reading before
// and after would miss a peak a collection removed in between; runtime/metrics reads without
// stopping the world.
func watchHeap() (stop func() uint64) {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	read := func() uint64 {
		metrics.Read(samples)
		return samples[0].Value.Uint64() + samples[1].Value.Uint64()
	}
	quit, out := make(chan struct{}), make(chan uint64, 1)
	go func() {
		peak := read()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				out <- max(peak, read())
				return
			case <-t.C:
				peak = max(peak, read())
			}
		}
	}()
	return func() uint64 {
		close(quit)
		return <-out
	}
}

// ---------- 8b: EC2 `shutting-down` then `terminated` ----------

// pairSide is one Karpenter machine of the pair measurement, with its workflow pods.
type pairSide struct {
	ns, node, claim, instance string
	vs                        []victim
	took                      time.Duration
}

// runScalePair runs n workflow pods on each of two Karpenter Nodes, deletes both Nodes with the
// machines gone (kwok stopped), and hands one fresh function `shutting-down` then `terminated`
// for the first machine, another fresh function only `terminated` for the second.
func runScalePair(ctx context.Context, e *env, n int, step func(string)) (*pairResult, error) {
	sides := []*pairSide{
		{ns: nsScalePair, node: "bench-scale-pair", claim: "workflows-pair", instance: instanceID(1 << 20)},
		{ns: nsScaleSingle, node: "bench-scale-single", claim: "workflows-single", instance: instanceID(1<<20 + 1)},
	}
	res := &pairResult{Pods: n, PairNode: sides[0].node, AloneNode: sides[1].node, PairFirst: "shutting-down", PairSecond: "terminated"}
	begin := time.Now()
	for _, s := range sides {
		if err := createKarpenterNode(ctx, e, s.node, s.claim, s.instance); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, s := range sides {
			if err := e.dyn.Resource(lookup.NodeClaimGVR).Delete(context.WithoutCancel(ctx), s.claim, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				e.logf("scale: deleting nodeclaim %s: %v", s.claim, err)
			}
		}
	}()
	// Each side in its own namespace: prepareOn counts every workflow pod of its namespace.
	err := parallel(len(sides), len(sides), func(i int) error {
		s := sides[i]
		var err error
		s.vs, s.took, err = e.prepareOn(ctx, s.ns, strings.TrimPrefix(s.node, "bench-"), n, s.node)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.SetupTook = time.Since(begin)
	waitGrace(ctx, append(append([]victim(nil), sides[0].vs...), sides[1].vs...))
	step(fmt.Sprintf("scale: set-up of 2 Karpenter Nodes with %d workflow pods each", n))

	// The machines are gone: nothing reports for their pods any more, and their Nodes are deleted.
	e.c.StopKwok()
	defer func() {
		if err := e.c.StartKwok(); err != nil {
			e.logf("scale: restarting kwok: %v", err)
		}
	}()
	for _, s := range sides {
		if err := e.kube.CoreV1().Nodes().Delete(ctx, s.node, metav1.DeleteOptions{}); err != nil {
			return nil, fmt.Errorf("deleting node %s: %w", s.node, err)
		}
	}
	if res.Pair, err = deliverStates(ctx, e, sides[0], res.PairFirst, res.PairSecond); err != nil {
		return nil, err
	}
	alone, err := deliverStates(ctx, e, sides[1], res.PairSecond)
	if err != nil {
		return nil, err
	}
	res.Alone = alone[0]
	res.PairDone, res.AloneDone = completedCount(ctx, e, sides[0]), completedCount(ctx, e, sides[1])
	e.logf("scale: pair %d+%d calls (%d/%d task results completed), alone %d calls (%d/%d)",
		len(res.Pair[0].Calls), len(res.Pair[1].Calls), res.PairDone, n, len(res.Alone.Calls), res.AloneDone, n)
	step("scale: EC2 shutting-down + terminated, and terminated alone")
	return res, nil
}

// createKarpenterNode creates a kwok Node (its pods run) with Karpenter's labels and an AWS
// provider ID, and the NodeClaim that names it.
func createKarpenterNode(ctx context.Context, e *env, node, claim, instance string) error {
	if err := e.c.CreateNode(ctx, node); err != nil {
		return fmt.Errorf("creating node %s: %w", node, err)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"workflows","karpenter.sh/registered":"true"}},"spec":{"providerID":%q}}`,
		lookup.KarpenterNodeLabel, awsProviderID(instance))
	if _, err := e.kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("labelling node %s as Karpenter's: %w", node, err)
	}
	return e.c.CreateNodeClaim(ctx, claim, awsProviderID(instance), node)
}

// deliverStates hands a fresh function (its index cold, as for the other side) the EC2 messages
// of the side's instance, in order.
func deliverStates(ctx context.Context, e *env, s *pairSide, states ...string) ([]message, error) {
	ip, err := newInProcess(e.c, "function-"+s.ns+".log", func(cfg *config.Config) {
		cfg.Namespaces = []string{s.ns}
	})
	if err != nil {
		return nil, err
	}
	defer ip.Handler.Stop(context.WithoutCancel(ctx))
	var out []message
	for _, st := range states {
		ev, err := ec2Message(s.instance, st)
		if err != nil {
			return nil, err
		}
		m := deliverMeasured(ctx, ip.Handler, st, ev)
		m.Instance = s.instance
		out = append(out, m)
	}
	return out, nil
}

func completedCount(ctx context.Context, e *env, s *pairSide) int {
	n := 0
	for _, v := range s.vs {
		if e.taskResultCompleted(ctx, s.ns, v.NodeID) {
			n++
		}
	}
	return n
}

// ---------- 8c: Reference-mode deletes of thousands of finished pods ----------

// finishedPod is one pod of the reference workflow.
type finishedPod struct{ nodeID, nodeName, pod string }

// runScaleRef creates one Running workflow with n finished pods (Succeeded, task results
// complete), deletes the pods, and hands a fresh function one Reference-mode delete per pod,
// one after another (directly: the adapter would only add its delivery).
func runScaleRef(ctx context.Context, e *env, n int, step func(string)) (*refResult, error) {
	res := &refResult{Pods: n, Statuses: map[int]int{}, ByCalls: map[int]int{}, Sequences: map[string]int{}}
	begin := time.Now()
	if err := e.c.EnsureNamespace(ctx, nsScaleRef); err != nil {
		return nil, err
	}
	if err := waitServiceAccount(ctx, e, nsScaleRef); err != nil {
		return nil, err
	}
	wf, pods, err := createRefWorkflow(ctx, e, n)
	if err != nil {
		return nil, err
	}
	err = parallel(len(pods), 16, func(i int) error { return createFinishedPod(ctx, e, wf, pods[i]) })
	if err != nil {
		return nil, err
	}
	res.SetupTook = time.Since(begin)
	e.logf("scale: %d finished pods of workflow %s with complete task results in %.1fs", len(pods), wf.Name, res.SetupTook.Seconds())
	step(fmt.Sprintf("scale: set-up of a workflow with %d finished pods", len(pods)))

	start := time.Now()
	if err := deletePods(ctx, e, pods); err != nil {
		return nil, err
	}
	res.DeleteTook = time.Since(start)
	ip, err := newInProcess(e.c, "function-scale-ref.log", func(cfg *config.Config) {
		cfg.Namespaces, cfg.ControllerInstanceID = []string{nsScaleRef}, foreignInstance
	})
	if err != nil {
		return nil, err
	}
	defer ip.Handler.Stop(context.WithoutCancel(ctx))
	res.QPS, res.Burst = ip.Config.KubeQPS, ip.Config.KubeBurst
	tmpl, err := fixture.LoadEvent("pod-ref-delete.json")
	if err != nil {
		return nil, err
	}
	start = time.Now()
	for i, p := range pods {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ev, err := refDelete(tmpl, nsScaleRef, p.pod)
		if err != nil {
			return nil, err
		}
		log := &apitap.Log{}
		t0 := time.Now()
		hres := ip.Handler.Handle(apitap.WithLog(ctx, log), ev)
		m := message{Label: "Reference-mode delete of " + p.pod, Status: resultStatus(hres), Took: time.Since(t0), Calls: log.Calls()}
		res.add(m)
		if i == 0 {
			res.Example = m
		}
		if (i+1)%1000 == 0 {
			e.logf("scale: %d/%d Reference-mode deletes handled", i+1, len(pods))
		}
	}
	res.Took = time.Since(start)
	e.logf("scale: %d Reference-mode deletes in %.1fs: %d calls (max %d per event), %d writes", res.Events, res.Took.Seconds(), res.TotalCalls, res.MaxCalls, res.Writes)
	step(fmt.Sprintf("scale: %d Reference-mode pod deletes handled", len(pods)))
	return res, nil
}

// add counts one event's calls.
func (r *refResult) add(m message) {
	r.Events++
	r.Statuses[m.Status]++
	r.ByCalls[len(m.Calls)]++
	r.Sequences[keys(m.Calls)]++
	r.TotalCalls += len(m.Calls)
	r.MaxCalls = max(r.MaxCalls, len(m.Calls))
	r.Writes += writes(m.Calls)
	r.Handle = append(r.Handle, m.Took)
	r.InCalls = append(r.InCalls, inCalls(m.Calls))
}

// writes counts the calls that are not reads (GET, which LISTs are too).
func writes(cs []apitap.Call) int {
	n := 0
	for _, c := range cs {
		if c.Method != http.MethodGet {
			n++
		}
	}
	return n
}

// waitServiceAccount waits for the namespace's default ServiceAccount, without which the API
// server refuses pods (the controller manager creates it shortly after the namespace).
func waitServiceAccount(ctx context.Context, e *env, ns string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := e.kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no default service account in %s after 30 s: %w", ns, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// createRefWorkflow creates a Running workflow with n finished Pod nodes (and one Running) in its
// compressed status, as another controller's (the running Argo controller leaves it alone), and
// returns it with its finished nodes' pods, named as Argo names them (v2: <wf>-<template>-<hash>).
func createRefWorkflow(ctx context.Context, e *env, n int) (*wfv1.Workflow, []finishedPod, error) {
	big, err := fixture.BigWorkflow(nsScaleRef, refWorkflow, n+2, foreignInstance)
	if err != nil {
		return nil, nil, err
	}
	big.Workflow.UID = ""
	wf, err := e.argo.ArgoprojV1alpha1().Workflows(nsScaleRef).Create(ctx, big.Workflow, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("creating workflow %s: %w", refWorkflow, err)
	}
	nodes, _, err := argoworkflow.Nodes(wf)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the nodes of workflow %s: %w", wf.Name, err)
	}
	var pods []finishedPod
	for id, nd := range nodes {
		if nd.Type == wfv1.NodeTypePod && nd.Phase == wfv1.NodeSucceeded {
			pods = append(pods, finishedPod{nodeID: id, nodeName: nd.Name, pod: argoworkflow.PodName(wf.Name, nd.Name, nd.TemplateName, id, "v2")})
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].pod < pods[j].pod })
	if len(pods) < n {
		return nil, nil, fmt.Errorf("workflow %s has %d finished pod nodes, want %d", wf.Name, len(pods), n)
	}
	return wf, pods[:n], nil
}

// createFinishedPod creates the node's pod as Argo leaves a finished one (Succeeded, labelled
// completed) and its task result, complete. No Node: nothing runs or removes it.
func createFinishedPod(ctx context.Context, e *env, wf *wfv1.Workflow, p finishedPod) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.pod, Namespace: wf.Namespace,
			Labels:      map[string]string{argoworkflow.LabelWorkflow: wf.Name, argoworkflow.LabelInstanceID: foreignInstance, argoworkflow.LabelCompleted: "true"},
			Annotations: map[string]string{argoworkflow.AnnotationNodeID: p.nodeID, argoworkflow.AnnotationNodeName: p.nodeName},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf.Name, UID: wf.UID,
				Controller: ptrTo(true)}},
		},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{
			{Name: "main", Image: "public.ecr.aws/docker/library/alpine:3.20", Command: []string{"sh", "-c", "true"}},
		}},
	}
	created, err := e.kube.CoreV1().Pods(wf.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod %s: %w", p.pod, err)
	}
	now := metav1.Now()
	created.Status.Phase = corev1.PodSucceeded
	created.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: pod.Spec.Containers[0].Image,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}}}}
	if _, err := e.kube.CoreV1().Pods(wf.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("marking pod %s Succeeded: %w", p.pod, err)
	}
	tr := fixture.TaskResult(wf, p.nodeID)
	tr.Labels[argoworkflow.LabelReportOutputsCompleted] = "true"
	if _, err := e.argo.ArgoprojV1alpha1().WorkflowTaskResults(wf.Namespace).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating task result %s: %w", p.nodeID, err)
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }

// deletePods deletes the pods and checks that they are gone (on no Node, a pod is removed at
// once: no kubelet has to confirm).
func deletePods(ctx context.Context, e *env, pods []finishedPod) error {
	err := parallel(len(pods), 16, func(i int) error {
		if err := e.kube.CoreV1().Pods(nsScaleRef).Delete(ctx, pods[i].pod, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("deleting pod %s: %w", pods[i].pod, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	left, err := e.kube.CoreV1().Pods(nsScaleRef).List(ctx, metav1.ListOptions{LabelSelector: argoworkflow.LabelWorkflow + "=" + refWorkflow, Limit: 1})
	switch {
	case err != nil:
		return fmt.Errorf("listing the pods of workflow %s: %w", refWorkflow, err)
	case len(left.Items) > 0:
		return fmt.Errorf("pod %s still there after its deletion", left.Items[0].Name)
	}
	return nil
}

// refDelete is the Reference-mode delete the ApiServerSource sends for a pod: only its reference.
func refDelete(tmpl event.Event, ns, pod string) (event.Event, error) {
	ev := tmpl.Clone()
	data, err := json.Marshal(map[string]string{"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": ns})
	if err != nil {
		return ev, err
	}
	ev.DataEncoded = data
	ev.SetID("bench-scale-ref-" + pod)
	ev.SetSubject("/apis/v1/namespaces/" + ns + "/pods/" + pod)
	ev.SetExtension("name", pod)
	ev.SetExtension("namespace", ns)
	ev.SetTime(time.Now())
	return ev, nil
}
