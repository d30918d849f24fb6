package handlers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
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
	dynamicfake "k8s.io/client-go/dynamic/fake"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"

	"function/config"
	"function/eventing"
	"function/eventing/eventingtest"
	"function/eventing/families"
	"function/internal/apifake"
	"function/internal/argoworkflow"
	"function/internal/lookup"
	"function/internal/repair"
)

// newHandler returns a handler over the fake API holding objs; fail, when set, is returned by every
// call.
func newHandler(t testing.TB, fail error, objs ...runtime.Object) (*Handler, *apifake.Cluster, *argofake.Clientset) {
	t.Helper()
	c := apifake.NewCluster(objs...)
	c.FailAll(fail)
	return handlerOver(c), c, c.Argo
}

// handlerOver wires a Handler over the fake API as package wiring does, with the default scope;
// tune changes its options.
func handlerOver(c *apifake.Cluster, tune ...func(*Options)) *Handler {
	sc := config.Scope{Excluded: []string{"kube-system"}}
	o := Options{
		Kube:         c.Kube,
		Registry:     families.Registry(),
		Repairer:     repair.New(c.Kube, c.Argo, repair.Options{Policy: repair.Policy{Scope: sc, NodeErrorGrace: time.Minute}}),
		Scope:        sc,
		Finder:       lookup.Finder{Kube: c.Kube, Dynamic: nodeClaims()},
		MaxBodyBytes: 4 << 20,
		Timeout:      5 * time.Second,
		Log:          zap.NewNop().Sugar(),
	}
	for _, f := range tune {
		f(&o)
	}
	return New(o)
}

// nodeClaims is a dynamic client serving the NodeClaims given (Karpenter's API installed).
func nodeClaims(claims ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{lookup.NodeClaimGVR: "NodeClaimList"}, claims...)
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
		calls    int // -1: not checked
		repaired bool
	}{
		// Answered without any API call: the cheap path.
		{"pod-delete-nonworkflow.json", unavailable, nil, 200, 0, false},
		{"pod-update-running.json", unavailable, nil, 200, 0, false},
		// wait exited 0: one read of the task result, since its exit code comes before its flip.
		{"pod-delete-completed.json", nil, []runtime.Object{apifake.Workflow(), apifake.TaskResult("true")}, 200, 1, true}, // already complete: read, not written
		{"pod-delete-completed.json", nil, nil, 200, 1, false},
		{"pod-delete-completed.json", nil, []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, 200, -1, true},
		{"pod-delete-completed.json", unavailable, nil, 503, 1, false},
		{"pod-delete-agent.json", unavailable, nil, 200, 0, false},
		// Relevant: repaired when the API answers, 503 when it does not.
		{"pod-delete-evicted.json", nil, []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, 200, -1, true},
		{"pod-delete-forced.json", nil, []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, 200, -1, true},
		{"pod-update-kubelet-evicted.json", nil, []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, 200, -1, true},
		{"pod-delete-evicted.json", unavailable, nil, 503, 1, false},
		// A reference carries no last status: the gate waits for the controller to mark the node
		// (rule 4 with the status unknown), then opens.
		{"pod-ref-delete.json", nil, []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, 200, -1, false},
		{"pod-ref-delete.json", nil, []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodeError)), apifake.TaskResult("false")}, 200, -1, true},
		{"pod-ref-update.json", nil, []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, 200, -1, false},
		{"pod-ref-update.json", nil, []runtime.Object{apifake.Workflow(apifake.WithNodePhase(wfv1.NodeError)), apifake.TaskResult("false")}, 200, -1, true},
		{"pod-ref-delete.json", unavailable, nil, 503, 1, false},
		// An update while the pod terminates: the pod is re-read; gone by then, so repaired.
		{"pod-update-evicting.json", nil, []runtime.Object{apifake.Workflow(), apifake.TaskResult("false")}, 200, -1, true},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			h, calls, argo := newHandler(t, tc.fail, tc.objs...)
			res := h.Handle(context.Background(), eventingtest.Load(t, tc.file))
			if got := statusOf(res); got != tc.status {
				t.Fatalf("status %d (%v), want %d", got, res, tc.status)
			}
			if tc.calls >= 0 && calls.Count("") != tc.calls {
				t.Errorf("%d API calls, want %d", calls.Count(""), tc.calls)
			}
			if tc.objs == nil {
				return
			}
			tr, err := argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(context.Background(), apifake.NodeID, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true"; got != tc.repaired {
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
			res := h.Handle(context.Background(), tc.ev)
			if got := statusOf(res); got != tc.status || !strings.Contains(res.Error(), tc.msg) {
				t.Fatalf("got %d %v, want %d %q", got, res, tc.status, tc.msg)
			}
			if calls.Count("") != 0 {
				t.Errorf("%d API calls for bad input", calls.Count(""))
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
	h, calls, argo := newHandler(t, nil, apifake.Workflow(), apifake.TaskResult("false"))
	if res := h.Handle(context.Background(), upd); res != nil || calls.Count("") != 0 {
		t.Fatalf("update: %v after %d API calls, want 200 after none", res, calls.Count(""))
	}
	if res := h.Handle(context.Background(), del); res != nil {
		t.Fatal(res)
	}
	n := calls.Count("")
	tr, _ := argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(context.Background(), apifake.NodeID, metav1.GetOptions{})
	if tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" || n != 6 {
		t.Errorf("delete: task result %v after %d calls, want completed after 6", tr.Labels, n)
	}
}

// A dead letter (the broker's last resort, sent to the function as its dead-letter sink) is
// logged and counted, never acted on: no API call, 200.
func TestDeadLetterIsLoggedNotActedOn(t *testing.T) {
	e := eventingtest.Load(t, "pod-delete-evicted.json")
	e.SetExtension("knativeerrordest", "http://argo-disruption-handler.argo-disruption-handler.svc.cluster.local")
	e.SetExtension("knativeerrorcode", "503")
	e.SetExtension("knativeerrordata", base64.StdEncoding.EncodeToString([]byte("reading workflow argo/nightly-etl-7k2xq: connection refused")))
	h, calls, argo := newHandler(t, nil, apifake.Workflow(), apifake.TaskResult("false"))
	if res := h.Handle(context.Background(), e); res != nil || calls.Count("") != 0 {
		t.Fatalf("dead letter: %v after %d API calls, want 200 after none", res, calls.Count(""))
	}
	tr, _ := argo.ArgoprojV1alpha1().WorkflowTaskResults(apifake.Namespace).Get(context.Background(), apifake.NodeID, metav1.GetOptions{})
	if tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "false" {
		t.Error("a dead letter was acted on")
	}
}
