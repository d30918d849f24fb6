package scenario

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
)

// Mode is how a scenario runs.
type Mode string

// The modes compared.
const (
	With    Mode = "with"    // the function repairs
	Without Mode = "without" // the controller alone
	DryRun  Mode = "dry-run" // the function plans only
)

// Deletion is how the pod is taken away.
type Deletion string

// The deletions.
const (
	// Force is a deletion with grace period 0 (Karpenter's forceful termination at the node's
	// deadline, PodGC of a vanished Node, kubectl delete --force).
	Force Deletion = "force"
	// Evict goes through the Eviction API, as a Karpenter drain does: the API server adds the
	// DisruptionTarget condition, kwok plays the kubelet's graceful stop.
	Evict Deletion = "evict"
	// KarpenterDrift changes the NodePool's template and lets Karpenter take the pod away: it
	// launches a replacement node, then drains the drifted one through the Eviction API. The
	// stack runs Karpenter and the workflow selects its NodePool.
	KarpenterDrift Deletion = "karpenter drift"
)

// Result is one measured run.
type Result struct {
	Version  string
	Scenario string
	Mode     Mode
	// Repair is pod deletion → our task-result (or finalizer) write seen on the API server; < 0
	// when none was seen.
	Repair time.Duration
	// Released is pod deletion → the workflow's status no longer waits on the node's task result
	// (the controller took the repair in, or healed by itself); < 0 when not seen.
	Released time.Duration
	// Moved is pod deletion → the workflow left Running (scenario c: the next scheduled workflow
	// was created); < 0 when not within Bound.
	Moved time.Duration
	// Rerun is pod deletion → the controller re-created the pod under the same name (Argo
	// 3.7.1+ does when it sees the pod gone while the task result is incomplete: the step runs
	// again); < 0 when it did not.
	Rerun   time.Duration
	Bound   time.Duration
	Outcome string
	Err     error
	// Timeline is what happened, with times relative to the deletion (for the demo).
	Timeline []string
	// Workflow is the disrupted workflow's name, T0 the deletion time.
	Workflow string
	T0       time.Time
}

// Env is what the scenarios run against.
type Env struct {
	C       *localcluster.Cluster
	Kube    kubernetes.Interface
	Argo    argoclient.Interface
	Version string
	// Bound is how long a run without the function is waited for.
	Bound time.Duration
	Logf  func(format string, args ...any)
}

// NewEnv wraps a running cluster.
func NewEnv(c *localcluster.Cluster, version string, bound time.Duration, logf func(string, ...any)) (*Env, error) {
	argo, err := argoclient.NewForConfig(c.RESTConfig())
	if err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Env{C: c, Kube: c.Kube(), Argo: argo, Version: version, Bound: bound, Logf: logf}, nil
}

// EnsureNamespace creates ns if needed.
func (e *Env) EnsureNamespace(ctx context.Context, ns string) error {
	return e.C.EnsureNamespace(ctx, ns)
}

// Spec describes the workflow of a scenario.
type Spec struct {
	Namespace, Node string
	// NodePool, instead of Node, lets the scheduler place the pods on nodes Karpenter launches for
	// that NodePool (they then request a little CPU and memory, as Karpenter sizes nodes by it).
	NodePool string
	// TerminateDelay is how long an evicted or deleted pod keeps running before kwok reports its
	// containers stopped (a kubelet takes that long to stop them); zero stops them at once.
	TerminateDelay time.Duration
	// Retry adds retryStrategy {limit: 2, retryPolicy: OnError} to the step.
	Retry bool
	// OnExit adds an exit handler.
	OnExit bool
	// DoNotDisrupt puts karpenter.sh/do-not-disrupt on the pod, as users do to keep Karpenter's
	// voluntary disruptions away from running steps: a drain leaves it in place.
	DoNotDisrupt bool
}

func (s Spec) workflowSpec() map[string]any {
	container := map[string]any{"image": "public.ecr.aws/docker/library/alpine:3.20", "command": []any{"sh", "-c", "sleep 3600"}}
	if s.NodePool != "" {
		container["resources"] = map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "64Mi"}}
	}
	step := map[string]any{"name": "main", "container": container}
	if s.Retry {
		step["retryStrategy"] = map[string]any{"limit": 2, "retryPolicy": "OnError"}
	}
	templates := []any{step}
	spec := map[string]any{
		"entrypoint": "main",
		"podGC":      map[string]any{"strategy": "OnPodCompletion"},
	}
	annotations := map[string]any{}
	if s.TerminateDelay > 0 {
		annotations[localcluster.TerminateDelayAnnotation] = s.TerminateDelay.String()
	}
	if s.DoNotDisrupt {
		annotations["karpenter.sh/do-not-disrupt"] = "true"
	}
	if len(annotations) > 0 {
		spec["podMetadata"] = map[string]any{"annotations": annotations}
	}
	if s.NodePool != "" {
		spec["nodeSelector"] = map[string]any{"karpenter.sh/nodepool": s.NodePool}
	} else {
		spec["podSpecPatch"] = fmt.Sprintf(`{"nodeName":%q}`, s.Node)
	}
	if s.OnExit {
		spec["onExit"] = "exit-handler"
		templates = append(templates, map[string]any{
			"name":      "exit-handler",
			"container": map[string]any{"image": "public.ecr.aws/docker/library/alpine:3.20", "command": []any{"true"}},
		})
	}
	spec["templates"] = templates
	return spec
}

var (
	workflowGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}
	cronGVR     = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "cronworkflows"}
)

// Submit creates the workflow and returns its name. It is created as unstructured JSON so that
// older controllers see exactly the fields they know.
func (e *Env) Submit(ctx context.Context, generateName string, s Spec) (*wfv1.Workflow, error) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"generateName": generateName, "namespace": s.Namespace},
		"spec":     s.workflowSpec(),
	}}
	out, err := e.C.Dynamic().Resource(workflowGVR).Namespace(s.Namespace).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("submitting %s in %s: %w", generateName, s.Namespace, err)
	}
	return e.Argo.ArgoprojV1alpha1().Workflows(s.Namespace).Get(ctx, out.GetName(), metav1.GetOptions{})
}

// poll calls f every interval until it returns true, an error, or timeout.
func poll(ctx context.Context, interval, timeout time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, err := f()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// RunningPod waits for the first pod of the workflow to be Running.
func (e *Env) RunningPod(ctx context.Context, wf *wfv1.Workflow) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := poll(ctx, 100*time.Millisecond, 90*time.Second, func() (bool, error) {
		pods, err := e.Kube.CoreV1().Pods(wf.Namespace).List(ctx, metav1.ListOptions{LabelSelector: argoworkflow.LabelWorkflow + "=" + wf.Name})
		if err != nil || len(pods.Items) == 0 {
			return false, nil
		}
		pod = &pods.Items[0]
		return pod.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		return nil, fmt.Errorf("pod of workflow %s/%s not Running: %w", wf.Namespace, wf.Name, err)
	}
	return pod, nil
}

// Gate does what the wait container does when it starts: it creates the node's task result,
// incomplete. (kwok runs no container, so nothing else would.)
func (e *Env) Gate(ctx context.Context, wf *wfv1.Workflow, pod *corev1.Pod) (string, error) {
	nodeID := pod.Annotations[argoworkflow.AnnotationNodeID]
	if nodeID == "" {
		nodeID = pod.Name
	}
	return nodeID, e.C.CreateTaskResult(ctx, wf.Namespace, wf.Name, string(wf.UID), nodeID, false)
}

// RunningStep submits a one-step workflow, waits for its pod to run and gates it as the wait
// container does: the workflow, its pod and the node's ID.
func (e *Env) RunningStep(ctx context.Context, generateName string, s Spec) (*wfv1.Workflow, *corev1.Pod, string, error) {
	wf, err := e.Submit(ctx, generateName, s)
	if err != nil {
		return nil, nil, "", err
	}
	pod, err := e.RunningPod(ctx, wf)
	if err != nil {
		return nil, nil, "", err
	}
	nodeID, err := e.Gate(ctx, wf, pod)
	return wf, pod, nodeID, err
}

// Delete takes the pod away and returns when the API server accepted it.
func (e *Env) Delete(ctx context.Context, pod *corev1.Pod, how Deletion) (time.Time, error) {
	switch how {
	case KarpenterDrift:
		if err := e.C.DriftNodePool(ctx, strconv.FormatInt(time.Now().UnixNano(), 36)); err != nil {
			return time.Time{}, err
		}
		return e.evicted(ctx, pod, 90*time.Second)
	case Evict:
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}}
		err := e.Kube.CoreV1().Pods(pod.Namespace).EvictV1(ctx, ev)
		return time.Now(), err
	default:
		zero := int64(0)
		err := e.Kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		return time.Now(), err
	}
}

// evicted returns when the pod got its deletionTimestamp (or is gone), waiting at most timeout.
func (e *Env) evicted(ctx context.Context, pod *corev1.Pod, timeout time.Duration) (time.Time, error) {
	var at time.Time
	err := poll(ctx, 50*time.Millisecond, timeout, func() (bool, error) {
		p, err := e.Kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || err == nil && (p.UID != pod.UID || p.DeletionTimestamp != nil) {
			at = time.Now()
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("pod %s/%s not evicted within %s: %w", pod.Namespace, pod.Name, timeout, err)
	}
	return at, nil
}

// watch follows a disrupted workflow from t0: when our repair lands on the task result, when the
// workflow leaves Running; meanwhile it completes every other pod of the workflow (a retry, the
// exit handler) as a kubelet running a short step would.
type watch struct {
	env      *Env
	wf       *wfv1.Workflow
	nodeID   string
	victim   string
	t0       time.Time
	mu       sync.Mutex
	timeline []string
}

func (w *watch) note(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timeline = append(w.timeline, fmt.Sprintf("%+7.2fs  ", time.Since(w.t0).Seconds())+fmt.Sprintf(format, args...))
}

// repairSeen returns when the task result became complete through our write (it carries our
// marker: the repaired label of the four-call path, or the full path's annotation), or -1 when
// not within timeout.
func (w *watch) repairSeen(ctx context.Context, timeout time.Duration) time.Duration {
	seen := time.Duration(-1)
	_ = poll(ctx, 20*time.Millisecond, timeout, func() (bool, error) {
		tr, err := w.env.Argo.ArgoprojV1alpha1().WorkflowTaskResults(w.wf.Namespace).Get(ctx, w.nodeID, metav1.GetOptions{})
		if err == nil && tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true" &&
			(tr.Labels[argoworkflow.LabelRepaired] != "" || tr.Annotations[argoworkflow.AnnotationRepaired] != "") {
			seen = time.Since(w.t0)
			w.note("task result %s completed by the function", w.nodeID)
			return true, nil
		}
		return false, nil
	})
	return seen
}

// notMeasurable marks a time the stored objects cannot show.
const notMeasurable = time.Duration(-2)

// gateReleased returns when the workflow's status stops waiting on the node's task result, or
// -1 when not within timeout.
func (w *watch) gateReleased(ctx context.Context, timeout time.Duration) time.Duration {
	seen := time.Duration(-1)
	_ = poll(ctx, 100*time.Millisecond, timeout, func() (bool, error) {
		wf, err := w.env.Argo.ArgoprojV1alpha1().Workflows(w.wf.Namespace).Get(ctx, w.wf.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if wf.Status.TaskResultsCompletionStatus == nil {
			// 3.7.x keeps the gate on the node (taskResultSynced) and marks it incomplete in
			// memory on every reconcile without persisting it (3.6.10 workflows under the status finalizer had no map either): the
			// stored status cannot tell.
			seen = notMeasurable
			return true, nil
		}
		nodes, _, _ := argoworkflow.Nodes(wf)
		if !argoworkflow.GateHolds(wf, nodes, w.nodeID) {
			seen = time.Since(w.t0)
			w.note("controller no longer waits on task result %s", w.nodeID)
			return true, nil
		}
		return false, nil
	})
	return seen
}

// completeOthers completes every Running pod of the workflow except the victim until ctx ends.
func (w *watch) completeOthers(ctx context.Context) {
	done := map[string]bool{w.victim: true}
	for ctx.Err() == nil {
		pods, err := w.env.Kube.CoreV1().Pods(w.wf.Namespace).List(ctx, metav1.ListOptions{LabelSelector: argoworkflow.LabelWorkflow + "=" + w.wf.Name})
		if err == nil {
			for _, p := range pods.Items {
				if !done[p.Name] && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
					if w.env.C.CompletePod(ctx, p.Namespace, p.Name, true) == nil {
						done[p.Name] = true
						w.note("pod %s (node %s) started and completed", p.Name, p.Annotations[argoworkflow.AnnotationNodeName])
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// leftRunning returns when the workflow's phase left Running (and its final phase when reached
// within a short settle time), or -1 when it did not within bound.
func (w *watch) leftRunning(ctx context.Context, bound time.Duration) (time.Duration, *wfv1.Workflow) {
	moved := time.Duration(-1)
	var last *wfv1.Workflow
	_ = poll(ctx, 100*time.Millisecond, bound, func() (bool, error) {
		wf, err := w.env.Argo.ArgoprojV1alpha1().Workflows(w.wf.Namespace).Get(ctx, w.wf.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = wf
		if wf.Status.Phase != wfv1.WorkflowRunning && wf.Status.Phase != wfv1.WorkflowPending && wf.Status.Phase != wfv1.WorkflowUnknown {
			moved = time.Since(w.t0)
			w.note("workflow %s", wf.Status.Phase)
			return true, nil
		}
		return false, nil
	})
	return moved, last
}

// outcome describes the workflow's end: phase, message, whether it retried and ran its exit
// handler.
func outcome(wf *wfv1.Workflow) string {
	if wf == nil {
		return "workflow not readable"
	}
	parts := []string{string(wf.Status.Phase)}
	if wf.Status.Message != "" {
		parts = append(parts, fmt.Sprintf("%q", wf.Status.Message))
	}
	pods, exit := 0, ""
	for _, n := range wf.Status.Nodes {
		switch {
		case strings.HasSuffix(n.Name, ".onExit"):
			exit = "exit handler " + string(n.Phase)
		case n.Type == wfv1.NodeTypePod:
			pods++
		}
	}
	if pods > 1 {
		parts = append(parts, fmt.Sprintf("%d pod nodes (retried)", pods))
	}
	if exit != "" {
		parts = append(parts, exit)
	}
	return strings.Join(parts, ", ")
}
