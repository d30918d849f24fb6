//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/config"
	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/apitap"
	"function/internal/localcluster/scenario"
)

// scope delivers events the function must not act on (outside its namespaces, another
// controller instance's, from a source not allowed): nothing may be written.
func (s *stack) scope(t *testing.T) {
	ctx := context.Background()
	vs := s.victims(t, []string{nsScope, nsOutside}, 2, scenario.Force, true, true)
	inScope, outside := vs[0], vs[1]
	source := inScope.del.Source() // the API server URL, as the adapter names it
	fn := s.inproc(t, "scope", s.c.Kubeconfig(), func(c *config.Config) {
		c.Namespaces = []string{nsScope}
		c.AllowedSources = []string{source}
	}, nil)

	// A workflow of another controller instance: the real controller (no instance ID) leaves
	// it alone, as it would another team's. Its status is written as that controller would.
	foreign, foreignNode := s.foreignWorkflow(t, nsScope, "team-b")

	cases := []struct {
		name   string
		ev     event.Event
		v      *victim
		status int
		calls  int // API calls allowed (reads, or writes the API server refused)
	}{
		{"workflow outside ADH_NAMESPACES", outside.del, outside, 200, 0},
		{"pod and workflow of another controller instance", s.syntheticDelete(t, foreign, foreignNode, source, map[string]string{argoworkflow.LabelInstanceID: "team-b"}),
			&victim{wf: foreign, nodeID: foreignNode}, 200, 0},
		// Only the Workflow's label says whose it is (a pod created before the controller got its
		// instance ID, or a forged event): the Workflow is read before anything is written.
		{"workflow of another controller instance, pod unlabelled", s.syntheticDelete(t, foreign, foreignNode, source, nil),
			&victim{wf: foreign, nodeID: foreignNode}, 200, 3},
		{"event from a source not in ADH_ALLOWED_SOURCES", withSource(inScope.del, "https://attacker.example:443"), inScope, 403, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, err := s.e.Argo.ArgoprojV1alpha1().WorkflowTaskResults(tc.v.wf.Namespace).Get(ctx, tc.v.nodeID, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			fn.tap.Reset()
			code, body := fn.deliver(ctx, tc.ev)
			calls := fn.tap.Calls()
			t.Logf("answer %d %q; calls: %s", code, short(body, 160), apitap.Summary(calls))
			if code != tc.status {
				t.Errorf("answer %d %q, want %d", code, body, tc.status)
			}
			for _, c := range calls {
				if c.Method != http.MethodGet && c.Accepted() {
					t.Errorf("wrote: %s %s → %d", c.Method, c.Path, c.Status)
				}
			}
			if len(calls) > tc.calls {
				t.Errorf("%d API calls, want at most %d", len(calls), tc.calls)
			}
			after, err := s.e.Argo.ArgoprojV1alpha1().WorkflowTaskResults(tc.v.wf.Namespace).Get(ctx, tc.v.nodeID, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if after.ResourceVersion != before.ResourceVersion || s.outcomeOf(t, tc.v) != (outcome{}) {
				t.Errorf("written: task result rv %s → %s, outcome %+v", before.ResourceVersion, after.ResourceVersion, s.outcomeOf(t, tc.v))
			}
		})
	}
	t.Run("the same event from the allowed source is repaired", func(t *testing.T) {
		if code, body := fn.deliver(ctx, inScope.del); code != http.StatusOK {
			t.Fatalf("answer %d %q", code, body)
		}
		if o := s.outcomeOf(t, inScope); !o.complete() {
			t.Errorf("outcome %+v, want the repair recorded", o)
		}
	})
}

// foreignWorkflow creates a Running workflow labelled for another controller instance, with its
// node waiting on an incomplete task result.
func (s *stack) foreignWorkflow(t *testing.T, ns, instance string) (*wfv1.Workflow, string) {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("foreign-%d", time.Now().UnixNano()%100000)
	nodeID := name + "-1234567890"
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{
			argoworkflow.LabelInstanceID: instance, argoworkflow.LabelPhase: "Running"}},
		"spec": map[string]any{"entrypoint": "main", "templates": []any{map[string]any{"name": "main",
			"container": map[string]any{"image": "alpine", "command": []any{"sleep", "3600"}}}}},
		"status": map[string]any{"phase": "Running", "startedAt": time.Now().UTC().Format(time.RFC3339),
			"nodes": map[string]any{nodeID: map[string]any{"id": nodeID, "name": name, "displayName": name, "type": "Pod",
				"templateName": "main", "phase": "Running", "startedAt": time.Now().UTC().Format(time.RFC3339)}},
			"taskResultsCompletionStatus": map[string]any{nodeID: false}},
	}}
	if _, err := s.c.Dynamic().Resource(localcluster.WorkflowGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wf, err := s.e.Argo.ArgoprojV1alpha1().Workflows(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.c.CreateTaskResult(ctx, ns, name, string(wf.UID), nodeID, false); err != nil {
		t.Fatal(err)
	}
	// The executor of an instance-ID controller labels its task result with that ID.
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, argoworkflow.LabelInstanceID, instance)
	if _, err := s.c.Dynamic().Resource(localcluster.WorkflowTaskResultGVR).Namespace(ns).Patch(ctx, nodeID, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	return wf, nodeID
}

// syntheticDelete is the delete event of a pod of wf's node as the adapter would send it, the
// pod owned by wf and labelled with its name and labels.
func (s *stack) syntheticDelete(t *testing.T, wf *wfv1.Workflow, nodeID, source string, labels map[string]string) event.Event {
	t.Helper()
	podName := wf.Name + "-main-" + nodeID[len(wf.Name)+1:]
	now := metav1.Now()
	pod := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: wf.Namespace, UID: "0f0f0f0f-1111-2222-3333-444444444444", DeletionTimestamp: &now,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf.Name, UID: wf.UID, Controller: ptrTrue()}},
			Labels:          map[string]string{argoworkflow.LabelWorkflow: wf.Name},
			Annotations:     map[string]string{argoworkflow.AnnotationNodeID: nodeID, argoworkflow.AnnotationNodeName: wf.Name}},
		Spec:   corev1.PodSpec{NodeName: localcluster.NodeName(0), Containers: []corev1.Container{{Name: "main"}, {Name: "wait"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for k, v := range labels {
		pod.Labels[k] = v
	}
	ev := event.New()
	ev.SetID(fmt.Sprintf("synthetic-%d", time.Now().UnixNano()))
	ev.SetSource(source)
	ev.SetType("dev.knative.apiserver.resource.delete")
	ev.SetSubject("/apis/v1/namespaces/" + wf.Namespace + "/pods/" + podName)
	ev.SetExtension("kind", "Pod")
	if err := ev.SetData("application/json", pod); err != nil {
		t.Fatal(err)
	}
	return ev
}

func ptrTrue() *bool { b := true; return &b }

// referenceEvent is del as a Reference-mode ApiServerSource sends it: type ref.delete, data
// {apiVersion, kind, name, namespace}.
func referenceEvent(t *testing.T, del event.Event, pod *corev1.Pod) event.Event {
	t.Helper()
	ev := del.Clone()
	ev.SetType("dev.knative.apiserver.ref.delete")
	if err := ev.SetData("application/json", map[string]string{"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "namespace": pod.Namespace}); err != nil {
		t.Fatal(err)
	}
	return ev
}

func withSource(e event.Event, source string) event.Event {
	c := e.Clone()
	c.SetSource(source)
	return c
}
