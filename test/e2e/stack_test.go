//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/cesink"
	"function/internal/localcluster/scenario"
	"function/internal/manifests"
	"function/internal/repair"
)

// functionStack builds the function binary and starts the local control plane with opts
// (startCluster); bound is how long scenarios wait for a workflow.
func functionStack(ctx context.Context, t *testing.T, opts localcluster.Options, bound time.Duration) (bin string, c *localcluster.Cluster, e *scenario.Env) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	bin, err := scenario.BuildFunction(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, e = startCluster(ctx, t, opts, bound)
	return bin, c, e
}

// startCluster starts the local control plane with opts and its scenario helpers (bound: how
// long scenarios wait for a workflow). It is stopped when the test ends or the process is
// interrupted, its logs kept when the test failed or ADH_E2E_KEEP is set.
func startCluster(ctx context.Context, t *testing.T, opts localcluster.Options, bound time.Duration) (*localcluster.Cluster, *scenario.Env) {
	t.Helper()
	opts.Logf = t.Logf
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	stopSignal := c.StopOnSignal(nil)
	t.Cleanup(func() {
		stopSignal()
		if t.Failed() || os.Getenv("ADH_E2E_KEEP") != "" {
			c.Keep()
			t.Logf("logs kept in %s", c.LogDir())
		}
		c.Stop()
	})
	e, err := scenario.NewEnv(c, opts.ArgoVersion, bound, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return c, e
}

// runFunction starts the built function against c with the given settings (its log in the
// stack's log directory), and stops it when the test ends.
func runFunction(ctx context.Context, t *testing.T, bin string, c *localcluster.Cluster, settings map[string]string) *scenario.Function {
	t.Helper()
	fn, err := scenario.StartFunction(ctx, bin, c.Kubeconfig(), filepath.Join(c.LogDir(), "function.log"), settings)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fn.Stop)
	return fn
}

// workflowPods is the adapter's watch of workflow pods, as the chart's ApiServerSource has it.
var workflowPods = localcluster.AdapterResource{Version: "v1", Resource: "pods", Selector: argoworkflow.LabelWorkflow}

// nodes is the shipped nodes source's Node watch (its NodeClaims need Karpenter's CRD): a Node's
// delete is what reaches the function for pods held on a gone Node, whose updates the shipped
// Triggers do not deliver.
var nodes = localcluster.AdapterResource{Version: "v1", Resource: "nodes"}

// startAdapter points the ApiServerSource adapter at sink, watching resources in namespaces
// (cluster-scoped ones cluster-wide), through shippedStream: sink gets only what the chart's
// sources and Triggers deliver. It stops the adapter when the test ends.
func startAdapter(t *testing.T, c *localcluster.Cluster, sink string, namespaces []string, resources ...localcluster.AdapterResource) {
	t.Helper()
	startAdapterRaw(t, c, shippedStream(t, sink), namespaces, resources...)
}

// startAdapterRaw is startAdapter without the shipped filters: for a sink that applies the
// Triggers itself (the Broker's ingress).
func startAdapterRaw(t *testing.T, c *localcluster.Cluster, sink string, namespaces []string, resources ...localcluster.AdapterResource) {
	t.Helper()
	if err := c.StartAdapterFor(sink, namespaces, resources); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.StopAdapter)
}

// startSink returns what closes the sink it is given at the end of the test, or fails the test
// if it did not start: startSink(t)(cesink.Forward(url)).
func startSink(t *testing.T) func(*cesink.Sink, error) *cesink.Sink {
	return func(s *cesink.Sink, err error) *cesink.Sink {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
}

// chartObject names one object the chart renders with its default values.
type chartObject struct{ kind, name string }

// createFromChart creates the release namespace (as `helm install --create-namespace` does) and
// objects of the chart, rendered with its default values, through dyn (the admin's client, or one
// the objects' RBAC applies to).
func createFromChart(ctx context.Context, t *testing.T, c *localcluster.Cluster, dyn dynamic.Interface, want ...chartObject) {
	t.Helper()
	objs, err := manifests.Render(manifests.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	createNamespace(ctx, t, dyn, manifests.Namespace)
	var found []*unstructured.Unstructured
	for _, w := range want {
		o := manifests.Find(objs, w.kind, w.name)
		if o == nil {
			t.Fatalf("the chart renders no %s %s", w.kind, w.name)
		}
		found = append(found, o)
	}
	m := mapperFor(ctx, t, c, found)
	for _, o := range found {
		if _, err := resourceFor(t, dyn, m, o).Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// noRepairWritten asserts that the function wrote nothing about a workflow node: its task result
// is still "false", the Workflow carries no record and the namespace no PodDisrupted Event. why
// names the case in failures; the Workflow is returned as read, for the caller's own checks.
func noRepairWritten(ctx context.Context, t *testing.T, e *scenario.Env, ns, workflow, nodeID, why string) *wfv1.Workflow {
	t.Helper()
	tr, err := e.Argo.ArgoprojV1alpha1().WorkflowTaskResults(ns).Get(ctx, nodeID, metav1.GetOptions{})
	if err != nil || tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "false" {
		t.Errorf("task result %s/%s: %v %v, want still \"false\" (%s)", ns, nodeID, err, tr.GetLabels(), why)
	}
	w, err := e.Argo.ArgoprojV1alpha1().Workflows(ns).Get(ctx, workflow, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if recs := repair.Recorded(w); len(recs) != 0 {
		t.Errorf("records written for %s: %v", why, recs)
	}
	evs, _ := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=" + repair.EventReason})
	if len(evs.Items) != 0 {
		t.Errorf("%d %s Events for %s", len(evs.Items), repair.EventReason, why)
	}
	return w
}
