//go:build e2e

package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/manifests"
)

// nsShipped runs the ordinary workload of the shipped part.
const nsShipped = "bench-shipped"

// shippedResult is what the chart's sources and Triggers deliver to the function for an
// ordinary workload with nothing disrupted, then for an idle period.
type shippedResult struct {
	Workflows, StepsPerWorkflow, Pods int
	// Sources are the ApiServerSources run, each as its reconciler configures its adapter.
	Sources []localcluster.AdapterSource
	// Posted counts the adapters' posts to the Broker's ingress during the workload.
	Posted int
	// Workload and Idle count the deliveries to the function by "type kind", during the
	// workload (until every workflow finished and 10 s passed) and in the idle window after.
	Workload, Idle   map[string]int
	Took, IdleWindow time.Duration
}

// deliveriesPerPod is the workload's deliveries divided by its workflow pods.
func (s *shippedResult) deliveriesPerPod() float64 {
	if s.Pods == 0 {
		return 0
	}
	return float64(total(s.Workload)) / float64(s.Pods)
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// deliveryCounter stands for the function behind the Broker's Triggers: it answers 200 and
// counts what it was given.
type deliveryCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (d *deliveryCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimSpace(r.Header.Get("Ce-Type") + " " + r.Header.Get("Ce-Kind"))
	d.mu.Lock()
	d.counts[key]++
	d.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// take returns the counts so far and starts again from zero.
func (d *deliveryCounter) take() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.counts
	d.counts = map[string]int{}
	return out
}

// shippedSources are the chart's ApiServerSources as the adapter runs them: namespaces from
// the namespaceSelector (kubernetes.io/metadata.name In; otherwise every namespace: the chart's
// default NotIn names only excluded namespaces, where the bench runs no workflow), resources with
// their label selectors (Exists and matchLabels).
func shippedSources() ([]localcluster.AdapterSource, error) {
	objs, err := manifests.Render(manifests.Namespace)
	if err != nil {
		return nil, err
	}
	var out []localcluster.AdapterSource
	for _, o := range objs {
		if o.GetKind() != "ApiServerSource" {
			continue
		}
		s := localcluster.AdapterSource{Name: o.GetName()}
		exprs, _, _ := unstructured.NestedSlice(o.Object, "spec", "namespaceSelector", "matchExpressions")
		for _, e := range exprs {
			m, _ := e.(map[string]any)
			if m["key"] == "kubernetes.io/metadata.name" && m["operator"] == "In" {
				s.Namespaces, _, _ = unstructured.NestedStringSlice(m, "values")
			}
		}
		res, _, _ := unstructured.NestedSlice(o.Object, "spec", "resources")
		for _, r := range res {
			m, _ := r.(map[string]any)
			gv, _ := m["apiVersion"].(string)
			kind, _ := m["kind"].(string)
			group, version, found := strings.Cut(gv, "/")
			if !found {
				group, version = "", gv
			}
			s.Resources = append(s.Resources, localcluster.AdapterResource{Group: group, Version: version,
				Resource: strings.ToLower(kind) + "s", Selector: selectorOf(m)})
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the chart has no ApiServerSource")
	}
	return out, nil
}

// selectorOf renders a resource's label selector (matchLabels, matchExpressions Exists) as a
// selector string.
func selectorOf(res map[string]any) string {
	var parts []string
	labels, _, _ := unstructured.NestedStringMap(res, "selector", "matchLabels")
	for k, v := range labels {
		parts = append(parts, k+"="+v)
	}
	exprs, _, _ := unstructured.NestedSlice(res, "selector", "matchExpressions")
	for _, e := range exprs {
		m, _ := e.(map[string]any)
		if m["operator"] == "Exists" {
			parts = append(parts, fmt.Sprint(m["key"]))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// runShipped runs n workflows of steps sequential steps (podGC OnPodCompletion), each pod
// driven as the kubelet and Argo's executor would (task result created, the container finished,
// the task result completed), with the events of the chart's sources going through the real
// Broker and its shipped Triggers to a counter; then counts what an idle minute delivers.
func runShipped(ctx context.Context, e *env, n, steps int, idle time.Duration) (*shippedResult, error) {
	res := &shippedResult{Workflows: n, StepsPerWorkflow: steps, IdleWindow: idle}
	var err error
	if res.Sources, err = shippedSources(); err != nil {
		return nil, err
	}
	if err := e.c.EnsureNamespace(ctx, nsShipped); err != nil {
		return nil, err
	}
	// The nodes source watches NodeClaims: its adapter does not start without Karpenter's API.
	if err := e.c.InstallNodeClaimCRD(ctx); err != nil {
		return nil, err
	}
	counter := &deliveryCounter{counts: map[string]int{}}
	sink, ingress, stop, err := e.throughBroker(ctx, counter)
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := e.c.StartAdapterSources(sink, res.Sources); err != nil {
		return nil, err
	}
	defer e.c.StopAdapter()
	time.Sleep(3 * time.Second) // the adapters' initial lists: nothing of the workload yet
	counter.take()
	begin := time.Now()
	for i := range n {
		obj := stepsWorkflow(nsShipped, fmt.Sprintf("quiet-%03d", i), steps, localcluster.NodeName(i%e.nodes))
		if _, err := e.dyn.Resource(localcluster.WorkflowGVR).Namespace(nsShipped).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("submitting workflow %d: %w", i, err)
		}
	}
	pods, err := e.driveToCompletion(ctx, nsShipped, n, 10*time.Minute)
	res.Pods = pods
	if err != nil {
		return res, err
	}
	time.Sleep(10 * time.Second) // the Argo controller's last updates and podGC's deletions
	res.Took = time.Since(begin)
	res.Posted = len(ingress.since(begin))
	res.Workload = counter.take()
	e.logf("shipped: %d workflows, %d pods, %d deliveries to the function (%d posted to the Broker) in %.0fs; idle %s next",
		n, pods, total(res.Workload), res.Posted, res.Took.Seconds(), idle)
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(idle):
	}
	res.Idle = counter.take()
	return res, nil
}

// stepsWorkflow is a workflow of steps sequential steps pinned to node, its pods removed as
// they complete.
func stepsWorkflow(ns, name string, steps int, node string) *unstructured.Unstructured {
	var seq []any
	for i := range steps {
		seq = append(seq, []any{map[string]any{"name": fmt.Sprintf("s%d", i), "template": "work"}})
	}
	container := map[string]any{"image": "public.ecr.aws/docker/library/alpine:3.20", "command": []any{"true"}}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"entrypoint":   "main",
			"podGC":        map[string]any{"strategy": "OnPodCompletion"},
			"podSpecPatch": fmt.Sprintf(`{"nodeName":%q}`, node),
			"templates": []any{
				map[string]any{"name": "main", "steps": seq},
				map[string]any{"name": "work", "container": container},
			},
		},
	}}
}

// driveToCompletion plays the kubelet and Argo's executor for every workflow pod of ns until n
// workflows finished: a Running pod gets its incomplete task result (the wait container's
// start), then its task result completed and the pod finished (the step's end). It returns how
// many pods it drove.
func (e *env) driveToCompletion(ctx context.Context, ns string, n int, bound time.Duration) (int, error) {
	driven := map[string]bool{}
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		pods, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: argoworkflow.LabelWorkflow})
		if err == nil {
			for _, p := range pods.Items {
				if driven[p.Name] || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
					continue
				}
				if err := e.finishStep(ctx, &p); err != nil {
					return len(driven), err
				}
				driven[p.Name] = true
			}
		}
		wfs, err := e.argo.ArgoprojV1alpha1().Workflows(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			done := 0
			for _, w := range wfs.Items {
				if w.Status.Phase.Completed() {
					done++
				}
			}
			if done == n {
				return len(driven), nil
			}
		}
		select {
		case <-ctx.Done():
			return len(driven), ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return len(driven), fmt.Errorf("%s: workflows not finished within %s", ns, bound)
}

// finishStep does for one pod what its wait container and the kubelet do over a healthy run.
func (e *env) finishStep(ctx context.Context, p *corev1.Pod) error {
	wf := p.Labels[argoworkflow.LabelWorkflow]
	nodeID := p.Annotations[argoworkflow.AnnotationNodeID]
	var wfUID string
	for _, o := range p.OwnerReferences {
		if o.Kind == "Workflow" {
			wfUID = string(o.UID)
		}
	}
	if err := e.c.CreateTaskResult(ctx, p.Namespace, wf, wfUID, nodeID, false); err != nil {
		return fmt.Errorf("task result of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := e.c.SetTaskResultCompleted(ctx, p.Namespace, nodeID, true); err != nil {
		return fmt.Errorf("completing the task result of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return e.c.CompletePod(ctx, p.Namespace, p.Name, true)
}

// writeShippedRow is row 11 of the summary: deliveries per undisrupted workflow pod and while idle.
func writeShippedRow(w writer, s *shippedResult) {
	const target = "≤ 1 delivery per undisrupted workflow pod; 0 while idle (the sweep's tick aside)"
	if s == nil || s.Pods == 0 {
		w("| 11 | what the chart delivers to the function, nothing disrupted | %s | %s | |\n", notRun, target)
		return
	}
	idle := total(s.Idle) - s.Idle["dev.knative.sources.ping"]
	w("| 11 | the chart's sources and Triggers through the real Broker, %d workflows × %d steps, nothing disrupted | **%.2f deliveries per workflow pod** (%d for %d pods; %d posted to the Broker); **%d** in the idle %s after | %s | %s |\n",
		s.Workflows, s.StepsPerWorkflow, s.deliveriesPerPod(), total(s.Workload), s.Pods, s.Posted, idle, secs(s.IdleWindow), target,
		verdict(s.deliveriesPerPod() <= 1 && idle == 0))
}

// writeShipped details what reached the function, by CloudEvent type and kind.
func writeShipped(w writer, s *shippedResult) {
	w("## 11. What the shipped manifests deliver when nothing is disrupted\n\n")
	if s == nil || s.Pods == 0 {
		w("%s.\n\n", notRun)
		return
	}
	w("One adapter per ApiServerSource of the chart, configured as its reconciler would (namespaces, resources,\n")
	w("label selectors), posts to the real Broker ingress; the Broker's filter applies the shipped Triggers and\n")
	w("delivers to a counter standing for the function. %d workflows of %d sequential steps (podGC\n", s.Workflows, s.StepsPerWorkflow)
	w("OnPodCompletion) run in `%s`, each pod driven as its executor and kubelet would; %s in all.\n\n", nsShipped, secs(s.Took))
	w("| source | namespaces | resources |\n|---|---|---|\n")
	for _, src := range s.Sources {
		var rs []string
		for _, r := range src.Resources {
			x := r.Resource
			if r.Selector != "" {
				x += " (" + r.Selector + ")"
			}
			rs = append(rs, x)
		}
		ns := strings.Join(src.Namespaces, ", ")
		if ns == "" {
			ns = "all"
		}
		w("| %s | %s | %s |\n", src.Name, ns, strings.Join(rs, ", "))
	}
	w("\n| delivered to the function | during the workload | idle %s after |\n|---|---|---|\n", secs(s.IdleWindow))
	keys := map[string]bool{}
	for k := range s.Workload {
		keys[k] = true
	}
	for k := range s.Idle {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		w("| `%s` | %d | %d |\n", k, s.Workload[k], s.Idle[k])
	}
	w("| all | %d (%.2f per pod) | %d |\n\n", total(s.Workload), s.deliveriesPerPod(), total(s.Idle))
}
