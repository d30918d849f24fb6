package repair

import (
	"context"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/apifake"
	"function/internal/argoworkflow"
)

// A Reference-mode delete names only the pod: its task result is found by name, in one or two
// reads for the names Argo gives, and the namespace's task results are listed only for a name
// that fits none of them.
func TestTargetsOfGonePod(t *testing.T) {
	named := func(name, wf, label string) *wfv1.WorkflowTaskResult {
		tr := apifake.TaskResult(label)
		tr.Name, tr.Labels[argoworkflow.LabelWorkflow] = name, wf
		return tr
	}
	for _, tc := range []struct {
		name   string
		pod    string
		objs   []runtime.Object
		want   string // the node ID located ("" none)
		calls  []string
		noList bool
	}{
		{"v2 name, one-word template, incomplete: one read", apifake.PodName, []runtime.Object{apifake.TaskResult("false")},
			apifake.NodeID, []string{"get workflowtaskresults/" + apifake.NodeID}, true},
		{"finished pod (task result complete): one read, nothing to repair", apifake.PodName, []runtime.Object{apifake.TaskResult("true")},
			"", []string{"get workflowtaskresults/" + apifake.NodeID}, true},
		{"root node: the pod is named as the workflow and its node", "hello-x7k2q", []runtime.Object{named("hello-x7k2q", "hello-x7k2q", "false")},
			"hello-x7k2q", []string{"get workflowtaskresults/hello-x7k2q"}, true},
		{"two-word template: the second guess", "nightly-etl-7k2xq-run-tests-1770056762", []runtime.Object{named(apifake.NodeID, apifake.WorkflowName, "false")},
			apifake.NodeID, nil, true},
		{"no task result: a bounded number of reads, then the list", apifake.PodName, nil, "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := apifake.NewCluster(tc.objs...)
			r := repairerOver(c, apifake.T0)
			got, err := r.TargetsOfGonePod(context.Background(), apifake.Namespace, tc.pod, apifake.T0, "test")
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, tg := range got {
				ids = append(ids, tg.NodeID)
			}
			if want := []string{tc.want}; (tc.want == "" && len(ids) != 0) || (tc.want != "" && !slices.Equal(ids, want)) {
				t.Errorf("located %v, want %q", ids, tc.want)
			}
			calls := c.Calls()
			if tc.calls != nil && !slices.Equal(calls, tc.calls) {
				t.Errorf("calls %v, want %v", calls, tc.calls)
			}
			listed := slices.ContainsFunc(calls, func(s string) bool { return strings.HasPrefix(s, "list ") })
			if listed == tc.noList {
				t.Errorf("calls %v: listed = %v, want %v", calls, listed, !tc.noList)
			}
			if n := len(calls); tc.noList && n > 2 {
				t.Errorf("%d calls %v, want at most 2", n, calls)
			}
		})
	}
}
