package handlers

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/clients"
	"function/config"
	"function/eventing/eventingtest"
	"function/handlers/record"
	"function/workflowmeta"
)

// verbLog records the verb of every API call of a fake clientset pair.
type verbLog struct {
	mu    sync.Mutex
	verbs []string
}

func (l *verbLog) reactor(a k8stesting.Action) (bool, runtime.Object, error) {
	l.mu.Lock()
	l.verbs = append(l.verbs, a.GetVerb()+" "+a.GetResource().Resource)
	l.mu.Unlock()
	return false, nil, nil
}

// TestOutOfScopeIsNeverWritten: a workflow outside ADH_NAMESPACES, one owned by another Argo
// controller instance, and an event from a source missing from ADH_ALLOWED_SOURCES are never
// written, whatever the event says; the same event in scope is repaired (so the refusal is the
// scope's doing, not the fixture's). The handler is wired by New from a config.Config, as the
// function wires it.
func TestOutOfScopeIsNeverWritten(t *testing.T) {
	const apiServer = "https://10.96.0.1:443" // the fixture's source
	withInstance := func(id string) func(*wfv1.Workflow) {
		return func(wf *wfv1.Workflow) { wf.Labels = map[string]string{workflowmeta.LabelInstanceID: id} }
	}
	cases := []struct {
		name      string
		cfg       func(*config.Config)
		wf        func(*wfv1.Workflow)
		source    string
		podLabels map[string]string // added to the event's pod
		status    int
		msg       string // fragment of the answer when refused
		maxCalls  int    // API calls allowed (reads only when not repaired)
		repaired  bool
		wantWrite bool
	}{
		{name: "in scope: repaired", status: 200, maxCalls: 5, repaired: true, wantWrite: true},
		{name: "namespace not in ADH_NAMESPACES", cfg: func(c *config.Config) { c.Namespaces = []string{"ml-jobs"} }, status: 200},
		{name: "namespace in ADH_EXCLUDED_NAMESPACES", cfg: func(c *config.Config) { c.ExcludedNamespaces = []string{fxNS} }, status: 200},
		// The pod lacks the label its workflow has (not what Argo writes): its task result, labelled
		// by the executor, fails the conditional patch; the workflow is then read and skipped.
		{name: "workflow of another controller instance (none configured)", wf: withInstance("team-b"), status: 200, maxCalls: 3},
		{name: "workflow of another controller instance (ours configured)", cfg: func(c *config.Config) { c.InstanceID = "team-a" }, wf: withInstance("team-b"), status: 200, maxCalls: 1},
		{name: "workflow without instance label while ours is configured", cfg: func(c *config.Config) { c.InstanceID = "team-a" }, status: 200, maxCalls: 1},
		{name: "pod and workflow of another instance, ours configured", cfg: func(c *config.Config) { c.InstanceID = "team-a" }, wf: withInstance("team-b"),
			podLabels: map[string]string{workflowmeta.LabelInstanceID: "team-b"}, status: 200},
		{name: "pod of our instance, its workflow of another", cfg: func(c *config.Config) { c.InstanceID = "team-a" }, wf: withInstance("team-b"),
			podLabels: map[string]string{workflowmeta.LabelInstanceID: "team-a"}, status: 200, maxCalls: 3},
		{name: "our instance configured, on the pod and the workflow: repaired", cfg: func(c *config.Config) { c.InstanceID = "team-a" }, wf: withInstance("team-a"),
			podLabels: map[string]string{workflowmeta.LabelInstanceID: "team-a"}, status: 200, maxCalls: 5, repaired: true, wantWrite: true},
		{name: "source not in the allow-list", cfg: func(c *config.Config) { c.AllowedSources = []string{"https://kubernetes.default.svc"} },
			status: 403, msg: `CloudEvent source not allowed: "https://10.96.0.1:443"`},
		{name: "source only shares a prefix with an exact entry", cfg: func(c *config.Config) { c.AllowedSources = []string{"https://10.96.0.1"} },
			status: 403, msg: "ADH_ALLOWED_SOURCES"},
		{name: "forged source", cfg: func(c *config.Config) { c.AllowedSources = []string{apiServer} }, source: "https://attacker.example/10.96.0.1:443",
			status: 403, msg: "attacker.example"},
		{name: "source allowed exactly: repaired", cfg: func(c *config.Config) { c.AllowedSources = []string{"arn:aws:sqs:eu-west-1:1:q", apiServer} },
			status: 200, maxCalls: 5, repaired: true, wantWrite: true},
		{name: "source allowed by prefix: repaired", cfg: func(c *config.Config) { c.AllowedSources = []string{"https://10.96.*"} },
			status: 200, maxCalls: 5, repaired: true, wantWrite: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultConfig(t)
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			wf := runningWorkflow()
			if tc.wf != nil {
				tc.wf(wf)
			}
			calls := &verbLog{}
			tr := incompleteTaskResult()
			if id, ok := wf.Labels[workflowmeta.LabelInstanceID]; ok {
				tr.Labels[workflowmeta.LabelInstanceID] = id // as the executor writes it
			}
			kube, argo := kubefake.NewSimpleClientset(), fakeArgo(wf, tr)
			kube.PrependReactor("*", "*", calls.reactor)
			argo.PrependReactor("*", "*", calls.reactor)
			h := New(cfg, &clients.Set{Kube: kube, Argo: argo}, zap.NewNop().Sugar())

			ev := eventingtest.Load(t, "pod-delete-evicted.json")
			if tc.podLabels != nil {
				var pod map[string]any
				if err := json.Unmarshal(ev.Data(), &pod); err != nil {
					t.Fatal(err)
				}
				labels := pod["metadata"].(map[string]any)["labels"].(map[string]any)
				for k, v := range tc.podLabels {
					labels[k] = v
				}
				if err := ev.SetData("application/json", pod); err != nil {
					t.Fatal(err)
				}
			}
			if tc.source != "" {
				ev.SetSource(tc.source)
			}
			_, res := h.Handle(context.Background(), ev)
			if got := statusOf(res); got != tc.status || (tc.msg != "" && !strings.Contains(res.Error(), tc.msg)) {
				t.Fatalf("answer %d %v, want %d %q", got, res, tc.status, tc.msg)
			}
			if n := len(calls.verbs); n > tc.maxCalls {
				t.Errorf("%d API calls %v, want at most %d", n, calls.verbs, tc.maxCalls)
			}
			// A conditional patch the API server refused (422) writes nothing: judge by the state.
			if evs, _ := kube.CoreV1().Events(fxNS).List(context.Background(), metav1.ListOptions{}); (len(evs.Items) > 0) != tc.wantWrite {
				t.Errorf("events %d, want any: %v (calls %v)", len(evs.Items), tc.wantWrite, calls.verbs)
			}
			tr, err := argo.ArgoprojV1alpha1().WorkflowTaskResults(fxNS).Get(context.Background(), fxNode, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := argo.ArgoprojV1alpha1().Workflows(fxNS).Get(context.Background(), fxWF, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			completed := tr.Labels[workflowmeta.LabelReportOutputsCompleted] == "true"
			if completed != tc.repaired || record.HasRecord(got, fxNode) != tc.repaired {
				t.Errorf("task result completed %v, recorded %v; want both %v", completed, record.HasRecord(got, fxNode), tc.repaired)
			}
			if !tc.repaired && (tr.Annotations[workflowmeta.AnnotationRepaired] != "" || got.ResourceVersion != wf.ResourceVersion) {
				t.Errorf("out-of-scope objects changed: task result %v, workflow rv %s → %s", tr.Annotations, wf.ResourceVersion, got.ResourceVersion)
			}
		})
	}
}

// defaultConfig is the configuration with every default, as Load reads it from an empty
// environment.
func defaultConfig(t *testing.T) *config.Config {
	t.Helper()
	for _, k := range []string{"ADH_NAMESPACES", "ADH_EXCLUDED_NAMESPACES", "ADH_INSTANCE_ID", "ADH_ALLOWED_SOURCES", "ADH_DRY_RUN"} {
		t.Setenv(k, "") // restored after the test
		_ = os.Unsetenv(k)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
