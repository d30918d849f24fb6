package handlers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"

	"function/eventing"
	"function/eventing/eventingtest"
	"function/eventing/families"
	"function/handlers/apifake"
	"function/handlers/lookup"
	"function/handlers/repair"
	"function/handlers/scope"
	"function/workflowmeta"
)

// The fixtures' workflow pod: nightly-etl-7k2xq-extract-1571963540 in argo, node
// nightly-etl-7k2xq-1571963540.
const (
	fxNS   = "argo"
	fxWF   = "nightly-etl-7k2xq"
	fxNode = "nightly-etl-7k2xq-1571963540"
)

type apiCounter struct{ n atomic.Int64 }

func (c *apiCounter) reactor(fail error) k8stesting.ReactionFunc {
	return func(k8stesting.Action) (bool, runtime.Object, error) {
		c.n.Add(1)
		if fail != nil {
			return true, nil, fail
		}
		return false, nil, nil
	}
}

func runningWorkflow() *wfv1.Workflow {
	return &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: fxWF, Namespace: fxNS, UID: fxWFUID, ResourceVersion: "9"},
		Status: wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning, TaskResultsCompletionStatus: map[string]bool{fxNode: false},
			Nodes: wfv1.Nodes{fxNode: {ID: fxNode, Type: wfv1.NodeTypePod, Phase: wfv1.NodeRunning}}},
	}
}

func incompleteTaskResult() *wfv1.WorkflowTaskResult { return taskResultLabelled("false") }

func taskResultLabelled(completed string) *wfv1.WorkflowTaskResult {
	return &wfv1.WorkflowTaskResult{ObjectMeta: metav1.ObjectMeta{Name: fxNode, Namespace: fxNS, ResourceVersion: "5",
		Labels:          map[string]string{workflowmeta.LabelWorkflow: fxWF, workflowmeta.LabelReportOutputsCompleted: completed},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: fxWF, UID: fxWFUID}}}}
}

// fxWFUID is the UID of the fixtures' workflow (their pods' ownerReference).
const fxWFUID = "0d7f6c1e-5b0e-4f55-9c55-0b9c1a3e8f21"

// fakeArgo is the Argo fake clientset answering JSON patches as kube-apiserver does.
func fakeArgo(objs ...runtime.Object) *argofake.Clientset {
	c := argofake.NewSimpleClientset(objs...)
	apifake.JSONPatchLikeAPIServer(c)
	return c
}

// newHandler returns a handler over fake clientsets holding the argo objects, counting every API
// call; fail, when set, is returned by every call.
func newHandler(t testing.TB, fail error, argoObjs ...runtime.Object) (*Handler, *apiCounter, *argofake.Clientset) {
	t.Helper()
	calls := &apiCounter{}
	kube, argo := kubefake.NewSimpleClientset(), fakeArgo(argoObjs...)
	kube.PrependReactor("*", "*", calls.reactor(fail))
	argo.PrependReactor("*", "*", calls.reactor(fail))
	return handlerOver(kube, argo), calls, argo
}

// handlerOver wires a Handler over the given clientsets with the default scope.
func handlerOver(kube *kubefake.Clientset, argo *argofake.Clientset) *Handler {
	sc := scope.Scope{Excluded: []string{"kube-system"}}
	r := repair.New(kube, argo, repair.Policy{Scope: sc, NodeErrorGrace: time.Minute})
	return &Handler{Registry: families.Registry(), Repairer: r, Scope: sc, Finder: lookup.Finder{Kube: kube},
		MaxBodyBytes: 4 << 20, Timeout: 5 * time.Second, Log: zap.NewNop().Sugar()}
}

func statusOf(res error) int {
	if res == nil {
		return http.StatusOK
	}
	var r *cehttp.Result
	if protocol.ResultAs(res, &r) {
		return r.StatusCode
	}
	return http.StatusInternalServerError
}

func TestHandleFixtures(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("etcdserver: leader changed")
	cases := []struct {
		file     string
		fail     error
		objs     []runtime.Object
		status   int
		calls    int64 // -1: not checked
		repaired bool
	}{
		// Answered without any API call: the cheap path.
		{"pod-delete-nonworkflow.json", unavailable, nil, 200, 0, false},
		{"pod-update-running.json", unavailable, nil, 200, 0, false},
		// wait exited 0: one read of the task result, since its exit code comes before its flip.
		{"pod-delete-completed.json", nil, []runtime.Object{runningWorkflow(), taskResultLabelled("true")}, 200, 1, true}, // already complete: read, not written
		{"pod-delete-completed.json", nil, nil, 200, 1, false},
		{"pod-delete-completed.json", nil, []runtime.Object{runningWorkflow(), incompleteTaskResult()}, 200, -1, true},
		{"pod-delete-completed.json", unavailable, nil, 503, 1, false},
		{"pod-delete-agent.json", unavailable, nil, 200, 0, false},
		// Relevant: repaired when the API answers, 503 when it does not.
		{"pod-delete-evicted.json", nil, []runtime.Object{runningWorkflow(), incompleteTaskResult()}, 200, -1, true},
		{"pod-delete-forced.json", nil, []runtime.Object{runningWorkflow(), incompleteTaskResult()}, 200, -1, true},
		{"pod-update-kubelet-evicted.json", nil, []runtime.Object{runningWorkflow(), incompleteTaskResult()}, 200, -1, true},
		{"pod-delete-evicted.json", unavailable, nil, 503, 1, false},
		{"pod-ref-delete.json", nil, []runtime.Object{runningWorkflow(), incompleteTaskResult()}, 200, -1, true},
		{"pod-ref-update.json", nil, []runtime.Object{runningWorkflow(), incompleteTaskResult()}, 200, -1, true},
		{"pod-ref-delete.json", unavailable, nil, 503, 1, false},
		// An update while the pod terminates: the pod is re-read; gone by then, so repaired.
		{"pod-update-evicting.json", nil, []runtime.Object{runningWorkflow(), incompleteTaskResult()}, 200, -1, true},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			h, calls, argo := newHandler(t, tc.fail, tc.objs...)
			_, res := h.Handle(context.Background(), eventingtest.Load(t, tc.file))
			if got := statusOf(res); got != tc.status {
				t.Fatalf("status %d (%v), want %d", got, res, tc.status)
			}
			if tc.calls >= 0 && calls.n.Load() != tc.calls {
				t.Errorf("%d API calls, want %d", calls.n.Load(), tc.calls)
			}
			if tc.objs == nil {
				return
			}
			tr, err := argo.ArgoprojV1alpha1().WorkflowTaskResults(fxNS).Get(context.Background(), fxNode, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := tr.Labels[workflowmeta.LabelReportOutputsCompleted] == "true"; got != tc.repaired {
				t.Errorf("task result completed = %v, want %v", got, tc.repaired)
			}
		})
	}
}

func TestHandleAnswers(t *testing.T) {
	base := eventingtest.Load(t, "pod-delete-evicted.json")
	big := base.Clone()
	big.DataEncoded = []byte(`{"kind":"Pod","metadata":{"name":"p","namespace":"n","annotations":{"x":"` + strings.Repeat("x", 5<<20) + `"}}}`)
	unknown := base.Clone()
	unknown.SetType("com.example.thing.happened")
	bad := base.Clone()
	bad.DataEncoded = []byte(`{"kind":"Pod","metadata":{"labels":{"workflows.argoproj.io/workflow":"w"}`)
	cases := []struct {
		name   string
		ev     event.Event
		status int
		msg    string
	}{
		{"over the body limit", big, 413, "event data too large"},
		{"unknown type", unknown, 400, "unsupported CloudEvent type"},
		{"truncated pod", bad, 400, "malformed event"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, calls, _ := newHandler(t, nil)
			_, res := h.Handle(context.Background(), tc.ev)
			if got := statusOf(res); got != tc.status || !strings.Contains(res.Error(), tc.msg) {
				t.Fatalf("got %d %v, want %d %q", got, res, tc.status, tc.msg)
			}
			if calls.n.Load() != 0 {
				t.Errorf("%d API calls for bad input", calls.n.Load())
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	gr := schema.GroupResource{Group: "argoproj.io", Resource: "workflows"}
	cases := []struct {
		err  error
		want int
	}{
		{nil, 200},
		{eventing.ErrMalformed, 400},
		{ErrNotWorkflowPod, 400},
		{ErrTooLarge, 413},
		{repair.ErrConflictsExhausted, 503},
		{context.DeadlineExceeded, 503},
		{apierrors.NewTooManyRequests("x", 1), 503},
		{apierrors.NewInternalError(errors.New("etcd")), 503},
		{apierrors.NewServerTimeout(gr, "get", 1), 503},
		{apierrors.NewConflict(gr, "w", errors.New("x")), 503},
		{apierrors.NewForbidden(gr, "w", errors.New("rbac")), 500},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "Workflow"}, "w", nil), 500},
		{errors.New(`Get "https://10.96.0.1:443": dial tcp: connect: connection refused`), 503},
		{errors.Join(apierrors.NewForbidden(gr, "w", errors.New("rbac")), ErrTooLarge), 413},
	}
	for _, c := range cases {
		if got := StatusOf(c.err); got != c.want {
			t.Errorf("StatusOf(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// A force deletion arrives as an update (deletionTimestamp, grace 0) then the delete: the update
// costs nothing, the delete repairs.
func TestForceDeleteUpdateWaitsForTheDelete(t *testing.T) {
	del := eventingtest.Load(t, "pod-delete-forced.json")
	upd := del.Clone()
	upd.SetType("dev.knative.apiserver.resource.update")
	var pod map[string]any
	if err := json.Unmarshal(upd.Data(), &pod); err != nil {
		t.Fatal(err)
	}
	md := pod["metadata"].(map[string]any)
	md["deletionTimestamp"], md["deletionGracePeriodSeconds"] = "2026-11-26T09:21:11Z", 0
	if err := upd.SetData("application/json", pod); err != nil {
		t.Fatal(err)
	}
	h, calls, argo := newHandler(t, nil, runningWorkflow(), incompleteTaskResult())
	if _, res := h.Handle(context.Background(), upd); res != nil || calls.n.Load() != 0 {
		t.Fatalf("update: %v after %d API calls, want 200 after none", res, calls.n.Load())
	}
	if _, res := h.Handle(context.Background(), del); res != nil {
		t.Fatal(res)
	}
	n := calls.n.Load()
	tr, _ := argo.ArgoprojV1alpha1().WorkflowTaskResults(fxNS).Get(context.Background(), fxNode, metav1.GetOptions{})
	if tr.Labels[workflowmeta.LabelReportOutputsCompleted] != "true" || n != 5 {
		t.Errorf("delete: task result %v after %d calls, want completed after 5", tr.Labels, n)
	}
}

// A dead letter (the broker's last resort, sent to the function as its dead-letter sink) is
// logged and counted, never acted on: no API call, 200.
func TestDeadLetterIsLoggedNotActedOn(t *testing.T) {
	e := eventingtest.Load(t, "pod-delete-evicted.json")
	e.SetExtension("knativeerrordest", "http://argo-disruption-handler.argo-disruption-handler.svc.cluster.local")
	e.SetExtension("knativeerrorcode", "503")
	e.SetExtension("knativeerrordata", base64.StdEncoding.EncodeToString([]byte("reading workflow argo/nightly-etl-7k2xq: connection refused")))
	h, calls, argo := newHandler(t, nil, runningWorkflow(), incompleteTaskResult())
	if _, res := h.Handle(context.Background(), e); res != nil || calls.n.Load() != 0 {
		t.Fatalf("dead letter: %v after %d API calls, want 200 after none", res, calls.n.Load())
	}
	tr, _ := argo.ArgoprojV1alpha1().WorkflowTaskResults(fxNS).Get(context.Background(), fxNode, metav1.GetOptions{})
	if tr.Labels[workflowmeta.LabelReportOutputsCompleted] != "false" {
		t.Error("a dead letter was acted on")
	}
}
