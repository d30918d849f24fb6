package sweep

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	argov1 "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/typed/workflow/v1alpha1"

	"function/config"
	"function/internal/apifake"
	"function/internal/argoworkflow"
	"function/internal/repair"
)

var (
	t0  = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	now = t0.Add(10 * time.Minute)
	ctx = context.Background()
)

const ns = "argo"

// wfWith builds a Running workflow with one Pod node per spec: "<name>:<phase>[:finishedAgo]".
// The gate map says false for every node listed in incomplete.
func wfWith(name string, nodes map[string]wfv1.NodeStatus, incomplete ...string) *wfv1.Workflow {
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name), ResourceVersion: "10",
			Labels: map[string]string{argoworkflow.LabelPhase: "Running"}, Annotations: map[string]string{argoworkflow.AnnotationPodNameFormat: "v2"}},
		Status: wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning, StartedAt: metav1.NewTime(t0), Nodes: wfv1.Nodes{}, TaskResultsCompletionStatus: map[string]bool{}},
	}
	for id, n := range nodes {
		n.ID = id
		wf.Status.Nodes[id] = n
	}
	for _, id := range incomplete {
		wf.Status.TaskResultsCompletionStatus[id] = false
	}
	return wf
}

func podNode(wf, display, phase string, finishedAgo time.Duration) (string, wfv1.NodeStatus) {
	name := wf + "[0]." + display
	n := wfv1.NodeStatus{Name: name, DisplayName: display, Type: wfv1.NodeTypePod, TemplateName: display,
		Phase: wfv1.NodePhase(phase), StartedAt: metav1.NewTime(t0)}
	if finishedAgo > 0 {
		n.FinishedAt = metav1.NewTime(now.Add(-finishedAgo))
	}
	return argoworkflow.NodeID(wf, name), n
}

func podFor(wf, nodeID, display string, phase corev1.PodPhase, opts ...func(*corev1.Pod)) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: wf + "-" + display + nodeID[len(wf):], Namespace: ns, UID: types.UID("pod-" + nodeID),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf, UID: types.UID("uid-" + wf)}},
			Labels:          map[string]string{argoworkflow.LabelWorkflow: wf},
			Annotations:     map[string]string{argoworkflow.AnnotationNodeID: nodeID}},
		Spec:   corev1.PodSpec{NodeName: "node-1"},
		Status: corev1.PodStatus{Phase: phase},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func TestCandidates(t *testing.T) {
	const wf = "etl"
	runID, running := podNode(wf, "extract", "Running", 0)
	okID, succeeded := podNode(wf, "load", "Succeeded", 5*time.Minute)
	freshID, fresh := podNode(wf, "fresh", "Error", 30*time.Second)
	pendID, pending := podNode(wf, "pending", "Pending", 0)
	terminatingLong := func(p *corev1.Pod) {
		ts := metav1.NewTime(now.Add(-5 * time.Minute))
		p.DeletionTimestamp = &ts
	}
	compressed := func(w *wfv1.Workflow) *wfv1.Workflow {
		s, err := argoworkflow.Compress(w.Status.Nodes)
		if err != nil {
			t.Fatal(err)
		}
		w.Status.CompressedNodes, w.Status.Nodes = s, nil
		return w
	}
	offloaded := func(w *wfv1.Workflow) *wfv1.Workflow {
		w.Status.OffloadNodeStatusVersion, w.Status.Nodes = "fnv:123", nil
		return w
	}
	v37 := func(w *wfv1.Workflow) *wfv1.Workflow {
		// Argo 3.7.1+: no completion map; the node is not "fulfilled" to NodeStatus.Fulfilled
		// while its task result is not synced, which is when the gate holds.
		w.Status.TaskResultsCompletionStatus = nil
		for id, n := range w.Status.Nodes {
			f := false
			n.TaskResultSynced = &f
			w.Status.Nodes[id] = n
		}
		return w
	}
	cases := []struct {
		name     string
		wf       *wfv1.Workflow
		pods     []corev1.Pod
		want     []string // node IDs
		wantWhy  string   // in the first candidate's Why
		wantPod  string   // the first candidate's pod name
		podState string
	}{
		{"healthy: Running node with its pod", wfWith(wf, map[string]wfv1.NodeStatus{runID: running}, runID),
			[]corev1.Pod{podFor(wf, runID, "extract", corev1.PodRunning)}, nil, "", "", ""},
		{"Running node whose pod is gone", wfWith(wf, map[string]wfv1.NodeStatus{runID: running}, runID),
			nil, []string{runID}, "its pod is gone", "etl-extract" + runID[len(wf):], "gone"},
		{"the same, nodes compressed", compressed(wfWith(wf, map[string]wfv1.NodeStatus{runID: running}, runID)),
			nil, []string{runID}, "its pod is gone", "etl-extract" + runID[len(wf):], "gone"},
		{"offloaded nodes: the gate map and the pods alone", offloaded(wfWith(wf, nil, runID)),
			nil, []string{runID}, "no pod for the node", "", "gone"},
		{"offloaded nodes, pod still running: not a candidate", offloaded(wfWith(wf, nil, runID)),
			[]corev1.Pod{podFor(wf, runID, "extract", corev1.PodRunning)}, nil, "", "", ""},
		{"pod Terminating for 5 min (stuck on a gone node)", wfWith(wf, map[string]wfv1.NodeStatus{runID: running}, runID),
			[]corev1.Pod{podFor(wf, runID, "extract", corev1.PodRunning, terminatingLong)}, []string{runID}, "Terminating for 5m0s", "etl-extract" + runID[len(wf):], "Terminating (Running)"},
		{"finished node, pod gone, task result incomplete: at once", wfWith(wf, map[string]wfv1.NodeStatus{freshID: fresh}, freshID),
			nil, []string{freshID}, "node Error, its pod is gone", "etl-fresh" + freshID[len(wf):], "gone"},
		{"finished node, pod still saving outputs, past the grace", wfWith(wf, map[string]wfv1.NodeStatus{okID: succeeded}, okID),
			[]corev1.Pod{podFor(wf, okID, "load", corev1.PodRunning)}, []string{okID}, "node Succeeded for 5m0s", "etl-load" + okID[len(wf):], "Running"},
		{"finished node, pod still saving outputs, within the grace: not yet", wfWith(wf, map[string]wfv1.NodeStatus{freshID: fresh}, freshID),
			[]corev1.Pod{podFor(wf, freshID, "fresh", corev1.PodRunning)}, nil, "", "", ""},
		{"finished node, task result complete: healthy", wfWith(wf, map[string]wfv1.NodeStatus{okID: succeeded}),
			nil, nil, "", "", ""},
		{"Pending node without pod: the controller creates it", wfWith(wf, map[string]wfv1.NodeStatus{pendID: pending}),
			nil, nil, "", "", ""},
		{"v3.7: node Error, taskResultSynced false, no gate map, pod gone", v37(wfWith(wf, map[string]wfv1.NodeStatus{freshID: fresh})),
			nil, []string{freshID}, "node Error, its pod is gone", "etl-fresh" + freshID[len(wf):], "gone"},
		{"pod Failed without reporting while the gate waits", wfWith(wf, map[string]wfv1.NodeStatus{runID: running}, runID),
			[]corev1.Pod{podFor(wf, runID, "extract", corev1.PodFailed)}, []string{runID}, "pod Failed without its outputs reported", "etl-extract" + runID[len(wf):], "Failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Candidates(tc.wf, tc.pods, now, 2*time.Minute)
			var ids []string
			for _, c := range got {
				ids = append(ids, c.Target.NodeID)
				if c.Target.Namespace != ns || c.Target.Workflow != wf || c.Target.Trigger != "sweep" {
					t.Errorf("target %+v", c.Target)
				}
			}
			if !slices.Equal(ids, tc.want) {
				t.Fatalf("candidates %v, want %v", ids, tc.want)
			}
			if len(got) == 0 {
				return
			}
			if !NeedsPods(tc.wf) {
				t.Error("NeedsPods says no pods need reading, and the workflow has candidates")
			}
			c := got[0]
			if !strings.Contains(c.Why, tc.wantWhy) || c.Target.PodName != tc.wantPod || c.PodState != tc.podState {
				t.Errorf("candidate why %q pod %q state %q, want %q %q %q", c.Why, c.Target.PodName, c.PodState, tc.wantWhy, tc.wantPod, tc.podState)
			}
		})
	}
}

func taskResult(wf, id, completed string) *wfv1.WorkflowTaskResult {
	return &wfv1.WorkflowTaskResult{ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: ns, ResourceVersion: "5",
		Labels:          map[string]string{argoworkflow.LabelWorkflow: wf, argoworkflow.LabelReportOutputsCompleted: completed},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf, UID: types.UID("uid-" + wf)}}}}
}

// pagingArgo wraps the fake API's Argo clientset so that workflow LISTs honour Limit and Continue
// (the generated fake drops them before any reactor sees them), count the calls, and can fail or
// expire a token.
type pagingArgo struct {
	*argofake.Clientset
	lists int
	// limits are the page sizes asked, in order.
	limits []int64
	fail   error
	// expire answers 410 with this continue token offered, for the continue token "stale".
	expire string
}

func (p *pagingArgo) ArgoprojV1alpha1() argov1.ArgoprojV1alpha1Interface {
	return pagingV1{p.Clientset.ArgoprojV1alpha1(), p}
}

type pagingV1 struct {
	argov1.ArgoprojV1alpha1Interface
	p *pagingArgo
}

func (v pagingV1) Workflows(namespace string) argov1.WorkflowInterface {
	return pagingWorkflows{v.ArgoprojV1alpha1Interface.Workflows(namespace), v.p}
}

type pagingWorkflows struct {
	argov1.WorkflowInterface
	p *pagingArgo
}

func (w pagingWorkflows) List(ctx context.Context, opts metav1.ListOptions) (*wfv1.WorkflowList, error) {
	w.p.lists++
	w.p.limits = append(w.p.limits, opts.Limit)
	if w.p.fail != nil {
		return nil, w.p.fail
	}
	if opts.Continue == "stale" {
		err := apierrors.NewResourceExpired("continue token too old")
		err.ErrStatus.ListMeta.Continue = w.p.expire
		return nil, err
	}
	all, err := w.WorkflowInterface.List(ctx, metav1.ListOptions{LabelSelector: opts.LabelSelector})
	if err != nil {
		return nil, err
	}
	items := all.Items
	slices.SortFunc(items, func(a, b wfv1.Workflow) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	start := 0
	if opts.Continue != "" {
		if _, err := fmt.Sscanf(opts.Continue, "page-%d", &start); err != nil {
			return nil, apierrors.NewBadRequest("bad continue token " + opts.Continue)
		}
	}
	end := len(items)
	if l := int(opts.Limit); l > 0 && start+l < end {
		end = start + l
	}
	out := &wfv1.WorkflowList{Items: items[start:end]}
	if end < len(items) {
		out.Continue = fmt.Sprintf("page-%d", end)
	}
	return out, nil
}

// stuckCluster has n Running workflows whose one pod is gone and task result incomplete, and one
// healthy workflow.
func stuckCluster(t *testing.T, n int) (*kubefake.Clientset, *pagingArgo) {
	var objs []runtime.Object
	for i := range n {
		name := fmt.Sprintf("etl-%02d", i)
		// The stuck state of 3.5.6-3.5.10 and 4.x: the controller marked the node Error ("pod
		// deleted") and the gate holds the workflow Running.
		id, node := podNode(name, "extract", "Error", 5*time.Minute)
		objs = append(objs, wfWith(name, map[string]wfv1.NodeStatus{id: node}, id), taskResult(name, id, "false"))
	}
	id, node := podNode("healthy", "extract", "Running", 0)
	objs = append(objs, wfWith("healthy", map[string]wfv1.NodeStatus{id: node}, id), taskResult("healthy", id, "false"))
	healthyPod := podFor("healthy", id, "extract", corev1.PodRunning)
	c := apifake.NewCluster(append(objs, &healthyPod, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})...)
	return c.Kube, &pagingArgo{Clientset: c.Argo}
}

func sweeper(kube *kubefake.Clientset, argo *pagingArgo, dryRun bool) *Sweeper {
	sc := config.Scope{Excluded: []string{"kube-system"}}
	r := repair.New(kube, argo, repair.Options{Policy: repair.Policy{Scope: sc, NodeErrorGrace: time.Minute}, DryRun: dryRun, Now: func() time.Time { return now }})
	return &Sweeper{Kube: kube, Argo: argo, Repairer: r, Scope: sc, Grace: 2 * time.Minute, PageSize: 2, Now: func() time.Time { return now }}
}

func completed(t *testing.T, argo *pagingArgo) int {
	t.Helper()
	list, err := argo.ArgoprojV1alpha1().WorkflowTaskResults(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tr := range list.Items {
		if tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true" {
			n++
		}
	}
	return n
}

func TestRun(t *testing.T) {
	cases := []struct {
		name      string
		stuck     int
		dryRun    bool
		listFail  error
		wantStuck int
		wantDone  int // task results completed afterwards
		wantErr   string
	}{
		{"five stuck over three pages: all repaired, the healthy one left", 5, false, nil, 5, 5, ""},
		{"API down: an error naming the listing, nothing written", 5, false, apierrors.NewServiceUnavailable("etcd"), 0, 0, "listing Running workflows in all namespaces"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kube, argo := stuckCluster(t, tc.stuck)
			argo.fail = tc.listFail
			s := sweeper(kube, argo, tc.dryRun)
			rep := s.Run(ctx, Options{})
			if tc.wantErr != "" {
				if len(rep.Errors) == 0 || !strings.Contains(rep.Errors[0].Error(), tc.wantErr) {
					t.Fatalf("errors %v, want one naming %q", rep.Errors, tc.wantErr)
				}
				if got := completed(t, argo); got != 0 {
					t.Errorf("%d task results completed without a listing", got)
				}
				return
			}
			if rep.Duration <= 0 {
				t.Error("no duration reported")
			}
			if rep.Stuck() != tc.wantStuck || rep.Workflows != tc.stuck+1 {
				t.Errorf("stuck %d of %d scanned, want %d of %d", rep.Stuck(), rep.Workflows, tc.wantStuck, tc.stuck+1)
			}
			if got := completed(t, argo); got != tc.wantDone {
				t.Errorf("%d task results completed, want %d", got, tc.wantDone)
			}
			if argo.lists != 3 {
				t.Errorf("%d workflow LIST calls, want 3 pages of 2", argo.lists)
			}
			if !rep.Next.Zero() {
				t.Errorf("next = %+v, want the end", rep.Next)
			}
			for _, f := range rep.Findings {
				if f.Stuck() && (!slices.Contains(f.Result.Plan.Actions, repair.CompleteTaskResult) || f.Target.PodName == "") {
					t.Errorf("finding %+v", f)
				}
			}
			// A second sweep finds nothing more to write.
			if rep2 := s.Run(ctx, Options{}); !tc.dryRun && rep2.Stuck() != 0 {
				t.Errorf("second sweep: %d stuck", rep2.Stuck())
			}
		})
	}
}

// A page's pods are read by batches of workflows (one LIST, a set-based selector), and only for
// the workflows that can hold a candidate: a workflow whose every Pod node finished with its task
// result complete costs no pod LIST.
func TestRunListsPodsByBatch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stuck     int
		finished  int // workflows whose Pod nodes all succeeded, gate open
		pageSize  int64
		wantLists int
	}{
		{"8 stuck and the healthy one on one page: one LIST", 8, 0, 100, 1},
		{"60 stuck: the first page of 10, then 51 in batches of 50", 60, 0, 100, 3},
		{"3 stuck and 40 finished: the finished ones are not listed", 3, 40, 100, 1},
		{"5 finished and the healthy one: one LIST, for the healthy one", 0, 5, 100, 1},
		{"pages of 2: one LIST a page", 5, 0, 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube, argo := stuckCluster(t, tc.stuck)
			for i := range tc.finished {
				name := fmt.Sprintf("done-%02d", i)
				id, node := podNode(name, "load", "Succeeded", 5*time.Minute)
				wf := wfWith(name, map[string]wfv1.NodeStatus{id: node})
				wf.Status.TaskResultsCompletionStatus[id] = true
				if err := argo.Tracker().Add(wf); err != nil {
					t.Fatal(err)
				}
			}
			podLists := 0
			kube.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) { podLists++; return false, nil, nil })
			s := sweeper(kube, argo, false)
			s.PageSize = tc.pageSize
			rep := s.Run(ctx, Options{})
			if rep.Stuck() != tc.stuck || len(rep.Errors) != 0 {
				t.Errorf("%d stuck (errors %v), want %d", rep.Stuck(), rep.Errors, tc.stuck)
			}
			if podLists != tc.wantLists {
				t.Errorf("%d pod LISTs for %d workflows, want %d", podLists, rep.Workflows, tc.wantLists)
			}
		})
	}
}

// Pages are sized by what their workflows weigh: after a first short page, light workflows come
// a PageSize at a time and heavy ones (thousands of nodes) a few at a time.
func TestRunSizesPagesByWeight(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nodes     int // Pod nodes per workflow
		wantLimit func(int64) bool
	}{
		{"light workflows: the page size", 1, func(l int64) bool { return l == 100 }},
		{"workflows of 8,000 nodes: fewer than the first page", 8000, func(l int64) bool { return l >= 1 && l < firstPage }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			for i := range 12 {
				name := fmt.Sprintf("big-%02d", i)
				nodes := map[string]wfv1.NodeStatus{}
				for j := range tc.nodes {
					id, node := podNode(name, fmt.Sprintf("step-%05d", j), "Succeeded", 5*time.Minute)
					nodes[id] = node
				}
				objs = append(objs, wfWith(name, nodes))
			}
			c := apifake.NewCluster(objs...)
			argo := &pagingArgo{Clientset: c.Argo}
			s := sweeper(c.Kube, argo, false)
			s.PageSize = 100
			rep := s.Run(ctx, Options{})
			if rep.Workflows != 12 || len(argo.limits) < 2 {
				t.Fatalf("%d workflows in %d pages (limits %v)", rep.Workflows, len(argo.limits), argo.limits)
			}
			if argo.limits[0] != firstPage || !tc.wantLimit(argo.limits[1]) {
				t.Errorf("page limits %v", argo.limits)
			}
		})
	}
}

// tickingClock advances one second each time it is read: the budget is checked against it.
func tickingClock() func() time.Time {
	at := now
	return func() time.Time { at = at.Add(time.Second); return at }
}

// The budget is checked after each workflow, inside a page: a run stops after the workflow that
// spent it, and the next resumes right after that workflow, in the middle of the page.
func TestRunResumesAcrossBudget(t *testing.T) {
	kube, argo := stuckCluster(t, 5)
	s := sweeper(kube, argo, false)
	var cur Cursor
	var runs, swept int
	for {
		runs++
		rep := s.Run(ctx, Options{From: cur, Budget: 2500 * time.Millisecond, Clock: tickingClock()})
		if len(rep.Errors) > 0 {
			t.Fatal(rep.Errors)
		}
		swept += rep.Workflows
		cur = rep.Next
		if runs == 1 && (cur.After != ns+"/etl-02" || cur.Continue != "page-2") {
			t.Errorf("first run stopped at %+v, want after %s/etl-02 in the page page-2 names", cur, ns)
		}
		if cur.Zero() || runs > 10 {
			break
		}
	}
	if runs != 2 || swept != 6 {
		t.Errorf("%d runs sweeping %d workflows, want 2 runs of 3: each workflow once", runs, swept)
	}
	if got := completed(t, argo); got != 5 {
		t.Errorf("%d completed, want 5", got)
	}
}

// A run killed in the middle of a page (an OOM, the request's deadline) loses its report; the
// next one resumes from the last cursor it stored, after the last workflow it finished.
func TestRunResumesAfterACrashMidPage(t *testing.T) {
	kube, argo := stuckCluster(t, 5)
	s := sweeper(kube, argo, false)
	var stored Cursor
	killed, kill := context.WithCancel(ctx)
	_ = s.Run(killed, Options{Checkpoint: func(c Cursor) error {
		stored = c
		if c.After == ns+"/etl-02" {
			kill()
		}
		return nil
	}})
	if stored.After != ns+"/etl-02" {
		t.Fatalf("stored cursor %+v, want after etl-02", stored)
	}
	rep := s.Run(ctx, Options{From: stored})
	if rep.Workflows != 3 || !rep.Next.Zero() || len(rep.Errors) > 0 {
		t.Errorf("resumed run swept %d workflows (next %+v, errors %v), want the 3 after etl-02 and the end", rep.Workflows, rep.Next, rep.Errors)
	}
	if got := completed(t, argo); got != 5 {
		t.Errorf("%d completed, want 5", got)
	}
}

// A workflow on which every run stops (too big for the budget or the memory) is skipped after
// MaxStalls runs, with its name in the report; the sweep goes on past it. A run stops either by
// being killed (what survives is the cursor it stored last) or by its request's deadline (the
// cursor it returns, which the handler stores when it releases the Lease).
func TestRunSkipsAWorkflowThatAlwaysStopsIt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		killed bool
	}{
		{"the process killed on it", true},
		{"the request's deadline reached on it", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube, argo := stuckCluster(t, 5)
			s := sweeper(kube, argo, false)
			stored := Cursor{Continue: "page-2", After: ns + "/etl-01"}
			for range MaxStalls {
				stopped, stop := context.WithCancel(ctx)
				rep := s.Run(stopped, Options{From: stored, Checkpoint: func(c Cursor) error {
					if tc.killed {
						stored = c
					}
					stop() // stops on the workflow after etl-01, every time
					return nil
				}})
				if !tc.killed {
					stored = rep.Next
				}
			}
			if stored.Stalls != MaxStalls || stored.After != ns+"/etl-01" {
				t.Fatalf("stored %+v, want after etl-01 with %d stalls", stored, MaxStalls)
			}
			rep := s.Run(ctx, Options{From: stored, Checkpoint: func(c Cursor) error { stored = c; return nil }})
			if !slices.Equal(rep.Skipped, []string{ns + "/etl-02"}) {
				t.Fatalf("skipped %v, want etl-02", rep.Skipped)
			}
			if rep.Workflows != 3 || !rep.Next.Zero() {
				t.Errorf("swept %d after the skip (next %+v), want etl-03, etl-04, healthy and the end", rep.Workflows, rep.Next)
			}
			for _, f := range rep.Findings {
				if f.Target.Workflow == "etl-02" {
					t.Errorf("the skipped workflow was swept: %+v", f)
				}
			}
		})
	}
}

// A listing that fails is not a workflow that stops the sweep: the stall count it returns is the
// one it started with.
func TestRunListingErrorIsNotAStall(t *testing.T) {
	kube, argo := stuckCluster(t, 3)
	argo.fail = apierrors.NewServiceUnavailable("etcd")
	from := Cursor{Continue: "page-2", After: ns + "/etl-01", Stalls: 1}
	rep := sweeper(kube, argo, false).Run(ctx, Options{From: from})
	if len(rep.Errors) == 0 || rep.Next != from {
		t.Errorf("next %+v (errors %v), want %+v", rep.Next, rep.Errors, from)
	}
}

func TestRunExpiredContinueToken(t *testing.T) {
	kube, argo := stuckCluster(t, 3)
	argo.expire = "page-2"
	rep := sweeper(kube, argo, false).Run(ctx, Options{From: Cursor{Continue: "stale"}})
	if len(rep.Errors) > 0 || argo.lists != 2 {
		t.Fatalf("errors %v after %d calls", rep.Errors, argo.lists)
	}
	// Resumed from the token the 410 offered: the last two of four workflows.
	if rep.Workflows != 2 {
		t.Errorf("%d workflows scanned, want 2", rep.Workflows)
	}
}

func TestLease(t *testing.T) {
	kube := apifake.NewCluster().Kube
	a := &Lease{Kube: kube, Namespace: "adh", Name: "sweep", Holder: "pod-a"}
	b := &Lease{Kube: kube, Namespace: "adh", Name: "sweep", Holder: "pod-b"}
	cur, err := a.Acquire(ctx, 25*time.Second, now)
	if err != nil || !cur.Zero() {
		t.Fatalf("first acquire: %+v %v", cur, err)
	}
	if _, err := b.Acquire(ctx, 25*time.Second, now.Add(time.Second)); !errors.Is(err, ErrHeld) {
		t.Fatalf("second holder while held: %v, want ErrHeld", err)
	}
	if err := a.Release(ctx, Cursor{Namespace: 1, Continue: "tok"}); err != nil {
		t.Fatal(err)
	}
	cur, err = b.Acquire(ctx, 25*time.Second, now.Add(2*time.Second))
	if err != nil || cur != (Cursor{Namespace: 1, Continue: "tok"}) {
		t.Fatalf("after release: %+v %v, want the stored cursor", cur, err)
	}
	// b dies without releasing: a takes over once the term has run out, with b's cursor.
	if _, err := a.Acquire(ctx, 25*time.Second, now.Add(10*time.Second)); !errors.Is(err, ErrHeld) {
		t.Fatalf("within b's term: %v", err)
	}
	if cur, err = a.Acquire(ctx, 25*time.Second, now.Add(40*time.Second)); err != nil || cur.Continue != "tok" {
		t.Fatalf("after b's term: %+v %v", cur, err)
	}
	if err := a.Release(ctx, Cursor{}); err != nil {
		t.Fatal(err)
	}
	l, _ := kube.CoordinationV1().Leases("adh").Get(ctx, "sweep", metav1.GetOptions{})
	if _, ok := l.Annotations[AnnotationCursor]; ok || l.Spec.HolderIdentity != nil {
		t.Errorf("after a complete scan: %+v", l)
	}
}

// Argo 3.7.1+ with offloaded nodes: neither the nodes nor a gate map are on the Workflow; the
// incomplete task results name the nodes, and those without a live pod are candidates.
func TestCandidatesOffloaded37(t *testing.T) {
	const wf = "etl"
	goneID, _ := podNode(wf, "extract", "Running", 0)
	liveID, _ := podNode(wf, "load", "Running", 0)
	w := wfWith(wf, nil)
	w.Status.OffloadNodeStatusVersion, w.Status.Nodes, w.Status.TaskResultsCompletionStatus = "fnv:1", nil, nil
	if got := Candidates(w, nil, now, 2*time.Minute); len(got) != 0 {
		t.Fatalf("without the task results: %d candidates", len(got))
	}
	got := Candidates(w, []corev1.Pod{podFor(wf, liveID, "load", corev1.PodRunning)}, now, 2*time.Minute, goneID, liveID)
	if len(got) != 1 || got[0].Target.NodeID != goneID || got[0].PodState != "gone" {
		t.Fatalf("candidates %+v, want only %s", got, goneID)
	}
}

// A checkpoint renews the holder's term and stores the cursor: a holder that dies mid-run leaves
// it to the next one, which resumes there once the term has run out.
func TestLeaseCheckpoint(t *testing.T) {
	kube := apifake.NewCluster().Kube
	a := &Lease{Kube: kube, Namespace: "adh", Name: "sweep", Holder: "pod-a"}
	b := &Lease{Kube: kube, Namespace: "adh", Name: "sweep", Holder: "pod-b"}
	if _, err := a.Acquire(ctx, 25*time.Second, now); err != nil {
		t.Fatal(err)
	}
	mid := Cursor{Continue: "page-2", After: ns + "/etl-02", Stalls: 1}
	if err := a.Checkpoint(ctx, mid, 25*time.Second, now.Add(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := b.Checkpoint(ctx, Cursor{}, 25*time.Second, now); err == nil {
		t.Error("a checkpoint by a non-holder was accepted")
	}
	if _, err := b.Acquire(ctx, 25*time.Second, now.Add(30*time.Second)); !errors.Is(err, ErrHeld) {
		t.Fatalf("within the renewed term: %v, want ErrHeld", err)
	}
	cur, err := b.Acquire(ctx, 25*time.Second, now.Add(50*time.Second))
	if err != nil || cur != mid {
		t.Fatalf("after a's term: %+v %v, want %+v", cur, err, mid)
	}
}
