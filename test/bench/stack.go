//go:build e2e

package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
)

// env is the bench's view of the running stack, with admin clients that are not rate limited
// (the bench must be able to delete 500 pods within a second).
type env struct {
	c     *localcluster.Cluster
	kube  kubernetes.Interface
	argo  argoclient.Interface
	dyn   dynamic.Interface
	nodes int
	logf  func(string, ...any)
	// broker and brokerSub are the Broker data plane of the via:broker bursts, once started.
	broker    *localcluster.Broker
	brokerSub *brokerSubscriber
}

func newEnv(c *localcluster.Cluster, nodes int, logf func(string, ...any)) (*env, error) {
	rc := c.RESTConfig()
	rc.QPS, rc.Burst = 2000, 4000
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	argo, err := argoclient.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &env{c: c, kube: kube, argo: argo, dyn: dyn, nodes: nodes, logf: logf}, nil
}

// victim is a workflow whose one pod runs, with the task result its wait container would have
// created: what a disruption takes away.
type victim struct {
	Workflow, WorkflowUID, Pod, PodUID, NodeID string
	Host                                       string    // the Node the pod runs on
	Running                                    time.Time // when the bench saw the pod Running
}

// parallel runs f(i) for i in [0,n) on `workers` goroutines and returns the first error.
func parallel(n, workers int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// placement is where a workflow's pod runs: pinned to a kwok Node (no scheduler), or on the
// nodes Karpenter launches for a NodePool (kube-scheduler places it; it then requests a little
// CPU and memory, as Karpenter sizes nodes by requests).
type placement struct {
	Node, NodePool string
	// TerminateDelay is how long an evicted pod keeps running (kwok's terminate-delay), as a
	// kubelet stopping containers would.
	TerminateDelay time.Duration
}

// workflowObject is a one-step workflow whose container would sleep for an hour, placed by at.
func workflowObject(ns, name string, at placement) *unstructured.Unstructured {
	container := map[string]any{"image": "public.ecr.aws/docker/library/alpine:3.20", "command": []any{"sh", "-c", "sleep 3600"}}
	spec := map[string]any{
		"entrypoint": "main",
		"templates":  []any{map[string]any{"name": "main", "container": container}},
	}
	if at.NodePool != "" {
		spec["nodeSelector"] = map[string]any{"karpenter.sh/nodepool": at.NodePool}
		container["resources"] = map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "64Mi"}}
	} else {
		spec["podSpecPatch"] = fmt.Sprintf(`{"nodeName":%q}`, at.Node)
	}
	if at.TerminateDelay > 0 {
		spec["podMetadata"] = map[string]any{"annotations": map[string]any{localcluster.TerminateDelayAnnotation: at.TerminateDelay.String()}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}

// prepare submits n workflows named <prefix>-<i> in ns, waits for every pod to run, creates
// each node's incomplete task result as the wait container does at start, and waits for the
// controller to have every node Running. It returns the victims in name order and how long that
// took.
func (e *env) prepare(ctx context.Context, ns, prefix string, n int) ([]victim, time.Duration, error) {
	return e.prepareAt(ctx, ns, prefix, n, func(i int) placement { return placement{Node: localcluster.NodeName(i % e.nodes)} })
}

// prepareOn is prepare with every pod on node.
func (e *env) prepareOn(ctx context.Context, ns, prefix string, n int, node string) ([]victim, time.Duration, error) {
	return e.prepareAt(ctx, ns, prefix, n, func(int) placement { return placement{Node: node} })
}

// prepareAt is prepare with workflow i's pod placed by at(i).
func (e *env) prepareAt(ctx context.Context, ns, prefix string, n int, at func(i int) placement) ([]victim, time.Duration, error) {
	if err := e.c.EnsureNamespace(ctx, ns); err != nil {
		return nil, 0, err
	}
	begin := time.Now()
	err := parallel(n, 16, func(i int) error {
		obj := workflowObject(ns, fmt.Sprintf("%s-%04d", prefix, i), at(i))
		_, err := e.dyn.Resource(localcluster.WorkflowGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("submitting workflows in %s: %w", ns, err)
	}
	e.logf("%s: %d workflows submitted in %.1fs; waiting for their pods to run", ns, n, time.Since(begin).Seconds())
	running := map[string]victim{}
	deadline := time.Now().Add(10 * time.Minute)
	lastReport := time.Now()
	for len(running) < n {
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("%s: only %d of %d pods Running after 10 min", ns, len(running), n)
		}
		pods, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: argoworkflow.LabelWorkflow})
		if err == nil {
			for _, p := range pods.Items {
				wf := p.Labels[argoworkflow.LabelWorkflow]
				if _, seen := running[wf]; seen || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
					continue
				}
				v := victim{Workflow: wf, Pod: p.Name, PodUID: string(p.UID), NodeID: p.Annotations[argoworkflow.AnnotationNodeID], Host: p.Spec.NodeName, Running: time.Now()}
				for _, o := range p.OwnerReferences {
					if o.Kind == "Workflow" {
						v.WorkflowUID = string(o.UID)
					}
				}
				running[wf] = v
			}
		}
		if time.Since(lastReport) > 15*time.Second {
			e.logf("%s: %d/%d pods Running", ns, len(running), n)
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	out := make([]victim, 0, n)
	for _, v := range running {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Workflow < out[j].Workflow })
	err = parallel(len(out), 16, func(i int) error {
		v := out[i]
		return e.c.CreateTaskResult(ctx, ns, v.Workflow, v.WorkflowUID, v.NodeID, false)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("creating task results in %s: %w", ns, err)
	}
	e.logf("%s: %d pods Running and task results created in %.1fs", ns, n, time.Since(begin).Seconds())
	// The controller must have caught up too: a node it still has as Pending gets a new pod when
	// its pod vanishes (Argo re-runs the step), which is not the disruption measured here. With
	// its default rate (20 QPS) it lags kwok by tens of seconds after hundreds of submissions.
	if err := e.waitNodesRunning(ctx, ns, out); err != nil {
		return nil, 0, err
	}
	e.logf("%s: the controller has every node Running after %.1fs", ns, time.Since(begin).Seconds())
	return out, time.Since(begin), nil
}

// waitNodesRunning waits until the controller's status of every victim's workflow has its node
// Running.
func (e *env) waitNodesRunning(ctx context.Context, ns string, vs []victim) error {
	deadline := time.Now().Add(10 * time.Minute)
	lastReport := time.Now()
	for {
		wfs, err := e.argo.ArgoprojV1alpha1().Workflows(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			phase := map[string]string{}
			for _, wf := range wfs.Items {
				if n, ok := wf.Status.Nodes[wf.Name]; ok {
					phase[wf.Name] = string(n.Phase)
				}
				for _, n := range wf.Status.Nodes {
					if n.Type == "Pod" {
						phase[wf.Name] = string(n.Phase)
					}
				}
			}
			running := 0
			for _, v := range vs {
				if phase[v.Workflow] == "Running" {
					running++
				}
			}
			if running == len(vs) {
				return nil
			}
			if time.Since(lastReport) > 15*time.Second {
				e.logf("%s: the controller has %d/%d nodes Running", ns, running, len(vs))
				lastReport = time.Now()
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the controller did not see every node Running within 10 min", ns)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// repairedOrDone reports whether the node's task result was completed by our repair, or the
// workflow has finished (the controller deletes a finished workflow's task results; on the
// controllers measured here it cannot finish while the task result is incomplete).
func (e *env) repairedOrDone(ctx context.Context, ns string, v victim) bool {
	if e.taskResultCompleted(ctx, ns, v.NodeID) {
		return true
	}
	wf, err := e.argo.ArgoprojV1alpha1().Workflows(ns).Get(ctx, v.Workflow, metav1.GetOptions{})
	return err == nil && wf.Status.Phase.Completed()
}

// recreated reports whether the controller made a new pod under the victim's name.
func (e *env) recreated(ctx context.Context, ns string, v victim) bool {
	p, err := e.kube.CoreV1().Pods(ns).Get(ctx, v.Pod, metav1.GetOptions{})
	return err == nil && string(p.UID) != v.PodUID
}

// startGrace is how long a pod must have run before its deletion: Argo's podReconciliation
// ignores nodes for 10 s after they start (RECENTLY_STARTED_POD_DURATION).
const startGrace = 11 * time.Second

// waitGrace sleeps until every victim's pod has run for startGrace.
func waitGrace(ctx context.Context, vs []victim) {
	var last time.Time
	for _, v := range vs {
		if v.Running.After(last) {
			last = v.Running
		}
	}
	if d := time.Until(last.Add(startGrace)); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}

// deletePod force-deletes a pod (grace 0, as PodGC, Karpenter's deadline or kubectl --force do)
// and returns when the API server accepted it.
func (e *env) deletePod(ctx context.Context, ns, name string) (time.Time, error) {
	zero := int64(0)
	err := e.kube.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	return time.Now(), err
}

// taskResultCompleted reports whether the node's task result is complete by our repair.
func (e *env) taskResultCompleted(ctx context.Context, ns, nodeID string) bool {
	tr, err := e.argo.ArgoprojV1alpha1().WorkflowTaskResults(ns).Get(ctx, nodeID, metav1.GetOptions{})
	return err == nil && completedByUs(tr.Labels, tr.Annotations)
}

// completedByUs reports whether a task result is complete and carries one of the function's own
// keys (argo-disruption-handler.dev/…, label or annotation, whichever the repair writes).
func completedByUs(labels, annotations map[string]string) bool {
	if labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
		return false
	}
	for _, m := range []map[string]string{labels, annotations} {
		for k := range m {
			if strings.HasPrefix(k, argoworkflow.Domain+"/") {
				return true
			}
		}
	}
	return false
}
