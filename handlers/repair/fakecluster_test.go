package repair

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"

	"function/handlers/apifake"
	"function/handlers/nodestatus"
	"function/handlers/scope"
	"function/workflowmeta"
)

// fakeCluster is a pair of fake clientsets made strict where the repair's safety depends on the
// API server: a merge patch carrying metadata.resourceVersion is refused with 409 unless it
// matches, every accepted write bumps the resourceVersion, and dry-run writes change nothing.
// It is for branch coverage only; the real proof runs against kube-apiserver (test/e2e).
type fakeCluster struct {
	kube *kubefake.Clientset
	argo *argofake.Clientset
	mu   sync.Mutex
	// calls lists "verb resource/name" for every API call, in order.
	calls []string
	// failNext makes the next call matching "verb resource" fail with this error.
	failNext map[string]error
}

func newFakeCluster(t *testing.T, objs ...runtime.Object) *fakeCluster {
	t.Helper()
	var kubeObjs, argoObjs []runtime.Object
	for _, o := range objs {
		switch o.(type) {
		case *wfv1.Workflow, *wfv1.WorkflowTaskResult:
			argoObjs = append(argoObjs, o)
		default:
			kubeObjs = append(kubeObjs, o)
		}
	}
	c := &fakeCluster{kube: kubefake.NewSimpleClientset(kubeObjs...), argo: argofake.NewSimpleClientset(argoObjs...), failNext: map[string]error{}}
	c.kube.PrependReactor("*", "*", c.react(c.kube.Tracker()))
	c.argo.PrependReactor("*", "*", c.react(c.argo.Tracker()))
	return c
}

func (c *fakeCluster) react(tracker k8stesting.ObjectTracker) k8stesting.ReactionFunc {
	return func(action k8stesting.Action) (bool, runtime.Object, error) {
		name := ""
		switch a := action.(type) {
		case k8stesting.CreateAction:
			if m, err := meta.Accessor(a.GetObject()); err == nil {
				name = m.GetName()
			}
		case interface{ GetName() string }: // get, patch, delete
			name = a.GetName()
		}
		c.mu.Lock()
		c.calls = append(c.calls, fmt.Sprintf("%s %s/%s", action.GetVerb(), action.GetResource().Resource, name))
		key := action.GetVerb() + " " + action.GetResource().Resource
		err, fail := c.failNext[key]
		delete(c.failNext, key)
		c.mu.Unlock()
		if fail {
			return true, nil, err
		}
		switch a := action.(type) {
		case k8stesting.PatchActionImpl:
			return c.patch(tracker, a)
		case k8stesting.CreateActionImpl:
			if len(a.CreateOptions.DryRun) > 0 {
				if _, err := tracker.Get(a.GetResource(), a.GetNamespace(), name); err == nil {
					return true, nil, apierrors.NewAlreadyExists(a.GetResource().GroupResource(), name)
				}
				return true, a.GetObject(), nil
			}
			m, _ := meta.Accessor(a.GetObject())
			m.SetResourceVersion("1")
		}
		return false, nil, nil
	}
}

func (c *fakeCluster) patch(tracker k8stesting.ObjectTracker, a k8stesting.PatchActionImpl) (bool, runtime.Object, error) {
	if a.GetPatchType() == types.JSONPatchType {
		// Test operations are the precondition; a failed one is 422, as kube-apiserver answers.
		handled, obj, err := apifake.Apply(tracker, a)
		switch {
		case err != nil:
			c.refused()
		case len(a.PatchOptions.DryRun) == 0:
			c.bumpRV(tracker, a)
		}
		return handled, obj, err
	}
	if a.GetPatchType() != types.MergePatchType {
		return true, nil, fmt.Errorf("fake cluster: only merge and JSON patches are expected, got %s", a.GetPatchType())
	}
	cur, err := tracker.Get(a.GetResource(), a.GetNamespace(), a.GetName())
	if err != nil {
		return true, nil, err
	}
	m, _ := meta.Accessor(cur)
	var p struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(a.GetPatch(), &p); err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	if p.Metadata.ResourceVersion != "" && p.Metadata.ResourceVersion != m.GetResourceVersion() {
		return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), a.GetName(), fmt.Errorf("the object has been modified"))
	}
	if len(a.PatchOptions.DryRun) > 0 {
		return true, cur, nil
	}
	before, _ := json.Marshal(cur)
	after, err := jsonpatch.MergePatch(before, a.GetPatch())
	if err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	obj := reflect.New(reflect.TypeOf(cur).Elem()).Interface().(runtime.Object)
	if err := json.Unmarshal(after, obj); err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	om, _ := meta.Accessor(obj)
	rv, _ := strconv.Atoi(m.GetResourceVersion())
	om.SetResourceVersion(strconv.Itoa(rv + 1))
	if om.GetDeletionTimestamp() != nil && len(om.GetFinalizers()) == 0 {
		// As kube-apiserver: the last finalizer of an object being deleted removes it.
		return true, obj, tracker.Delete(a.GetResource(), a.GetNamespace(), a.GetName())
	}
	if err := tracker.Update(a.GetResource(), obj, a.GetNamespace()); err != nil {
		return true, nil, err
	}
	return true, obj, nil
}

// bumpRV gives the object just written by a JSON patch a new resourceVersion.
func (c *fakeCluster) bumpRV(tracker k8stesting.ObjectTracker, a k8stesting.PatchActionImpl) {
	cur, err := tracker.Get(a.GetResource(), a.GetNamespace(), a.GetName())
	if err != nil {
		return
	}
	m, _ := meta.Accessor(cur)
	rv, _ := strconv.Atoi(m.GetResourceVersion())
	m.SetResourceVersion(strconv.Itoa(rv + 1))
	_ = tracker.Update(a.GetResource(), cur, a.GetNamespace())
}

func (c *fakeCluster) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// refused marks the last call as a write the API server refused: it changed nothing.
func (c *fakeCluster) refused() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[len(c.calls)-1] += " (refused)"
}

// writes are the calls that changed something (refused conditional writes excluded).
func (c *fakeCluster) writes() []string {
	var out []string
	for _, s := range c.Calls() {
		if s[:3] != "get" && s[:4] != "list" && !strings.HasSuffix(s, " (refused)") {
			out = append(out, s)
		}
	}
	return out
}

func (c *fakeCluster) repairer(now time.Time) *Repairer {
	r := New(c.kube, c.argo, Policy{Scope: scope.Scope{Excluded: []string{"kube-system"}}, NodeErrorGrace: time.Minute})
	r.Now = func() time.Time { return now }
	r.Host = "test-host"
	return r
}

// Objects as the Argo controller and the wait container make them.

const (
	testNS     = "argo"
	testWF     = "nightly-etl-7k2xq"
	testWFUID  = "0d7f6c1e-5b0e-4f55-9c55-0b9c1a3e8f21"
	testNodeID = "nightly-etl-7k2xq-1571963540"
	testPod    = "nightly-etl-7k2xq-extract-1571963540"
	testHost   = "ip-10-0-1-23.eu-west-1.compute.internal"
)

var t0 = time.Date(2026, 11, 26, 9, 14, 2, 0, time.UTC)

// testLastSeenVersion is the resourceVersion an Argo 4 controller last updated the workflow from.
const testLastSeenVersion = "98"

type wfOpt func(*wfv1.Workflow)

// workflow returns a Running workflow whose pod node testNodeID is Running under a Retry node,
// with the task result gate waiting on it, as a 3.5.x controller writes it (plus the
// last-seen-version annotation of a 4.x controller).
func workflow(opts ...wfOpt) *wfv1.Workflow {
	retryID := workflowmeta.NodeID(testWF, testWF+"[0].extract")
	wf := &wfv1.Workflow{
		TypeMeta: metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow"},
		ObjectMeta: metav1.ObjectMeta{Name: testWF, Namespace: testNS, UID: testWFUID, ResourceVersion: "100", Labels: map[string]string{workflowmeta.LabelPhase: "Running"},
			Annotations: map[string]string{workflowmeta.AnnotationLastSeenVersion: testLastSeenVersion}},
		Status: wfv1.WorkflowStatus{
			Phase:     wfv1.WorkflowRunning,
			StartedAt: metav1.NewTime(t0),
			Nodes: wfv1.Nodes{
				testWF:     {ID: testWF, Name: testWF, Type: wfv1.NodeTypeSteps, Phase: wfv1.NodeRunning, Children: []string{retryID}, StartedAt: metav1.NewTime(t0)},
				retryID:    {ID: retryID, Name: testWF + "[0].extract", Type: wfv1.NodeTypeRetry, Phase: wfv1.NodeRunning, Children: []string{testNodeID}, StartedAt: metav1.NewTime(t0)},
				testNodeID: {ID: testNodeID, Name: testWF + "[0].extract(0)", Type: wfv1.NodeTypePod, Phase: wfv1.NodeRunning, TemplateName: "extract", HostNodeName: testHost, StartedAt: metav1.NewTime(t0)},
			},
			TaskResultsCompletionStatus: map[string]bool{testNodeID: false},
		},
	}
	for _, o := range opts {
		o(wf)
	}
	return wf
}

func withPhase(p wfv1.WorkflowPhase) wfOpt { return func(wf *wfv1.Workflow) { wf.Status.Phase = p } }
func withNodePhase(p wfv1.NodePhase) wfOpt {
	return func(wf *wfv1.Workflow) {
		n := wf.Status.Nodes[testNodeID]
		n.Phase = p
		wf.Status.Nodes[testNodeID] = n
	}
}
func withUID(uid types.UID) wfOpt { return func(wf *wfv1.Workflow) { wf.UID = uid } }
func withLabel(k, v string) wfOpt { return func(wf *wfv1.Workflow) { wf.Labels[k] = v } }
func withDeletion() wfOpt {
	return func(wf *wfv1.Workflow) {
		now := metav1.NewTime(t0)
		wf.DeletionTimestamp = &now
		wf.Finalizers = []string{"workflows.argoproj.io/artifact-gc"}
	}
}

// withCompressedNodes stores the nodes as a controller does past ~1 MiB.
func withCompressedNodes(wf *wfv1.Workflow) {
	s, err := nodestatus.Compress(wf.Status.Nodes)
	if err != nil {
		panic(err)
	}
	wf.Status.CompressedNodes, wf.Status.Nodes = s, nil
}

// withOffloadedNodes stores the nodes in Argo's database.
func withOffloadedNodes(wf *wfv1.Workflow) {
	wf.Status.OffloadNodeStatusVersion, wf.Status.Nodes = "fnv:784213453", nil
}

// with37Synced models a v3.7.1+ workflow: no completion map, taskResultSynced on the node.
func with37Synced(wf *wfv1.Workflow) {
	wf.Status.TaskResultsCompletionStatus = nil
	n := wf.Status.Nodes[testNodeID]
	f := false
	n.TaskResultSynced = &f
	wf.Status.Nodes[testNodeID] = n
}

func taskResult(label string) *wfv1.WorkflowTaskResult { return taskResultOf(testWFUID, label) }

// taskResultOf is the task result the executor of workflow uid's pod made.
func taskResultOf(uid types.UID, label string) *wfv1.WorkflowTaskResult {
	labels := map[string]string{workflowmeta.LabelWorkflow: testWF}
	if label != "" {
		labels[workflowmeta.LabelReportOutputsCompleted] = label
	}
	return &wfv1.WorkflowTaskResult{
		TypeMeta: metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "WorkflowTaskResult"},
		ObjectMeta: metav1.ObjectMeta{Name: testNodeID, Namespace: testNS, ResourceVersion: "50", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: testWF, UID: uid}}},
	}
}

type podOpt func(*corev1.Pod)

func pod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: testPod, Namespace: testNS, UID: "pod-uid-1", ResourceVersion: "70",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: testWF, UID: testWFUID, Controller: ptr(true)}},
			Labels:          map[string]string{workflowmeta.LabelWorkflow: testWF, workflowmeta.LabelCompleted: "false"},
			Annotations:     map[string]string{workflowmeta.AnnotationNodeID: testNodeID, workflowmeta.AnnotationNodeName: testWF + "[0].extract(0)"}},
		Spec: corev1.PodSpec{NodeName: testHost, Containers: []corev1.Container{{Name: "main"}, {Name: "wait"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "main", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			{Name: "wait", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func terminating(p *corev1.Pod) {
	ts := metav1.NewTime(t0.Add(6 * time.Minute))
	p.DeletionTimestamp = &ts
}

// forceDeleted is a deletion with grace period 0 (PodGC, Karpenter at the node's deadline).
func forceDeleted(p *corev1.Pod) {
	terminating(p)
	zero := int64(0)
	p.DeletionGracePeriodSeconds = &zero
}

func withStatusFinalizer(p *corev1.Pod) { p.Finalizers = []string{workflowmeta.FinalizerStatus} }

func withFinalizer(p *corev1.Pod) {
	p.Finalizers = []string{"example.com/keep", workflowmeta.FinalizerStatus}
}
func failed(p *corev1.Pod) {
	p.Status.Phase = corev1.PodFailed
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 143}}
	}
}

// markedFailedByPodGC is what PodGC does to a pod of a vanished Node before deleting it: phase
// Failed, DisruptionTarget DeletionByPodGC, containers left as they were (running).
func markedFailedByPodGC(p *corev1.Pod) {
	p.Status.Phase = corev1.PodFailed
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByPodGC"})
}

func evicted(p *corev1.Pod) {
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting"})
}

// evictedBeforeStart is a pod the kubelet evicted while its main container had not started (an
// image still pulling): the kind Argo 4's failedPodRestart deletes and creates again.
func evictedBeforeStart(p *corev1.Pod) {
	p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", "The node was low on resource: memory."
	p.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "main", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown"}}},
		{Name: "wait", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", StartedAt: metav1.NewTime(t0)}}},
	}
}

func reincarnated(p *corev1.Pod) { p.UID = "pod-uid-2" }

func hostNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testHost}}
}

func target(opts ...podOpt) Target {
	t, err := TargetFromPod(pod(opts...), t0.Add(6*time.Minute), "pod delete event")
	if err != nil {
		panic(err)
	}
	return t
}

func withNodeMessage(m string) wfOpt {
	return func(wf *wfv1.Workflow) {
		n := wf.Status.Nodes[testNodeID]
		n.Message = m
		wf.Status.Nodes[testNodeID] = n
	}
}

func ptr[T any](v T) *T { return &v }
