//go:build e2e

// TestResilience proves, on the local real control plane with the real Argo workflow-controller
// (ADH_E2E_RESILIENCE_ARGO, default v3.5.10: the version that never heals by itself, so a
// workflow that moves was moved by us), what the function must hold under re-delivery,
// races, API faults and scope:
//
//	go test -tags e2e -run TestResilience -v ./test/e2e/
//
// The function runs in-process, built as Start builds it (scenario.NewInProcess: config.Load,
// wiring.Build) behind func-go's CloudEvents HTTP stack (ce.New, the CloudEvents SDK receiver),
// its clients wrapped by an apitap.Tap that logs (and, for the races, interferes with) every API
// call; the fault tests reach the API server through an apitap.Proxy. The events are the real
// ones: the Knative ApiServerSource adapter watches the test namespaces and posts to a
// cesink recorder, and each subtest delivers the recorded events itself, as often and in
// whatever order it needs. The subtests are in resilience_races_test.go (duplicates, 409 races),
// resilience_faults_test.go (API faults) and resilience_scope_test.go (scope).
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ce "knative.dev/func-go/cloudevents"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/config"
	"function/handlers"
	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/apitap"
	"function/internal/localcluster/cesink"
	"function/internal/localcluster/scenario"
	"function/internal/repair"
)

const (
	nsDup     = "e2e-dup"
	nsRace    = "e2e-race"
	nsFault   = "e2e-fault"
	nsScope   = "e2e-scope"
	nsOutside = "e2e-outside"
	// controllerMark is the annotation a simulated controller update writes.
	controllerMark = "e2e.argo-disruption-handler.dev/controller-update"
)

func TestResilience(t *testing.T) {
	s := startStack(t, nsDup, nsRace, nsFault, nsScope, nsOutside)
	t.Run("DuplicateDeliveries", s.duplicateDeliveries)
	t.Run("ConflictRace", s.conflictRace)
	t.Run("APIFaults", s.apiFaults)
	t.Run("Scope", s.scope)
}

// TestRecordAfterWorkflowEnds: the repair's write lands, the calls that record it fail (the
// Event's POST answers 500), and the outage lasts until the controller, released by the repair,
// has finished the workflow (and deleted its task results). The event re-delivered once the API
// is back must still record why the workflow failed: the annotation and the Event.
//
// It found that a re-delivery stopped at the finished workflow (repair.WorkflowSkip) and lost the
// record; the repair now records a finished workflow's node that ended "pod deleted" when the
// event's pod incarnation has no record yet (repair.lateRecord). In test/run.sh.
func TestRecordAfterWorkflowEnds(t *testing.T) {
	ctx := context.Background()
	s := startStack(t, nsFault)
	proxy, viaProxy := s.faultProxy(t, 6*time.Second)
	fn := s.inproc(t, "record-after-end", viaProxy, func(c *config.Config) { c.EventTimeout = 2 * time.Second }, nil)
	vs := s.victims(t, []string{nsFault}, 2, scenario.Force, true, false)
	if code, body := fn.deliver(ctx, vs[0].del); code != http.StatusOK {
		t.Fatalf("fault-free repair answered %d %q", code, body)
	}
	pos := 0
	for _, p := range proxy.Take() {
		if p.Method == http.MethodPost && p.Resource() == "events" {
			pos = p.N
			break
		}
	}
	if pos == 0 {
		t.Fatal("a repair created no Event")
	}
	v := vs[1]
	proxy.Arm(apitap.Fault500, pos)
	code, body := fn.deliver(ctx, v.del)
	t.Logf("outage from call %d (POST events): answered %d %q; calls %s; left %s", pos, code, short(body, 120), apitap.Sequence(proxy.Take()), state(s.outcomeOf(t, v)))
	began := time.Now()
	var final string
	if err := waitFor(ctx, 90*time.Second, func() bool {
		wf, err := s.e.Argo.ArgoprojV1alpha1().Workflows(v.wf.Namespace).Get(ctx, v.wf.Name, metav1.GetOptions{})
		final = ""
		if err == nil && wf.Status.Phase.Completed() {
			final = fmt.Sprintf("%s %q", wf.Status.Phase, wf.Status.Message)
		}
		return final != ""
	}); err != nil {
		t.Fatalf("workflow %s not finished 90 s after its task result was completed", v.wf.Name)
	}
	proxy.Disarm()
	t.Logf("workflow finished (%s) %.1f s into the outage; API back, event re-delivered", final, time.Since(began).Seconds())
	code, body = fn.deliver(ctx, v.del)
	o := s.outcomeOf(t, v)
	t.Logf("re-delivery: %d %q; calls %s; outcome %+v", code, short(body, 120), apitap.Sequence(proxy.Take()), o)
	if code != http.StatusOK || !o.Recorded || o.Events != 1 {
		t.Errorf("the repair of %s is not recorded: record annotation %v, %d Events (want both, once)", v.wf.Name, o.Recorded, o.Events)
	}
}

// startStack starts the control plane (Argo ADH_E2E_RESILIENCE_ARGO, default v3.5.10), the
// namespaces, and the adapter watching their workflow pods into a recorder; all stopped when
// the test ends.
func startStack(t *testing.T, namespaces ...string) *stack {
	t.Helper()
	ctx := context.Background()
	c, e := startCluster(ctx, t, localcluster.Options{ArgoVersion: env("ADH_E2E_RESILIENCE_ARGO", "v3.5.10"), Nodes: 3}, 0)
	s := &stack{c: c, e: e, t: t}
	for _, ns := range namespaces {
		if err := s.e.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if s.rec, err = cesink.Record(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.rec.Close)
	if err := c.StartAdapter(shippedStream(t, s.rec.URL), namespaces, argoworkflow.LabelWorkflow); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.StopAdapter)
	return s
}

// stack is the running control plane, the scenario helpers and the event recorder.
type stack struct {
	c   *localcluster.Cluster
	e   *scenario.Env
	rec *cesink.Sink
	t   *testing.T
}

// victim is a workflow whose pod was taken away, with the events the adapter sent for the pod.
type victim struct {
	wf     *wfv1.Workflow
	pod    *corev1.Pod
	nodeID string
	// del is the pod's delete event; updates its update events with a deletionTimestamp, in
	// the order the adapter sent them.
	del     event.Event
	updates []event.Event
}

// victims submits n one-step workflows in the namespaces (round robin), waits for their pods to run, creates their
// incomplete task results as the wait container would, optionally waits out the controller's
// start grace, takes every pod away and returns once the adapter has sent each delete event.
// With onExit the workflows have an exit handler, whose pod nobody completes: once repaired they
// stay Running, their task results kept (the controller deletes those of a finished workflow).
// Without the grace the controller, finding a pod gone within 10 s of its start, creates it
// again under the same name (seen here on 3.5.10), and the repair rightly waits for that pod.
func (s *stack) victims(t *testing.T, nss []string, n int, how scenario.Deletion, grace, onExit bool) []*victim {
	t.Helper()
	ctx := context.Background()
	vs := make([]*victim, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range vs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ns := nss[i%len(nss)]
			wf, err := s.e.Submit(ctx, ns+"-", scenario.Spec{Namespace: ns, Node: localcluster.NodeName(i % 3), OnExit: onExit})
			if err != nil {
				errs[i] = err
				return
			}
			pod, err := s.e.RunningPod(ctx, wf)
			if err != nil {
				errs[i] = err
				return
			}
			nodeID, err := s.e.Gate(ctx, wf, pod)
			vs[i], errs[i] = &victim{wf: wf, pod: pod, nodeID: nodeID}, err
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if grace {
		time.Sleep(11 * time.Second) // Argo's podReconciliation ignores nodes for 10 s after they start
	}
	for _, v := range vs {
		if _, err := s.e.Delete(ctx, v.pod, how); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vs {
		ns := v.wf.Namespace
		if err := waitFor(ctx, 60*time.Second, func() bool {
			for _, ev := range s.rec.Events(cesink.PodSubject(ns, v.pod.Name)) {
				if ev.Type() == "dev.knative.apiserver.resource.delete" {
					v.del = ev
					return true
				}
			}
			return false
		}); err != nil {
			t.Fatalf("no delete event for pod %s/%s from the adapter", ns, v.pod.Name)
		}
		for _, ev := range s.rec.Events(cesink.PodSubject(ns, v.pod.Name)) {
			var p corev1.Pod
			if ev.Type() == "dev.knative.apiserver.resource.update" && json.Unmarshal(ev.Data(), &p) == nil && p.DeletionTimestamp != nil {
				v.updates = append(v.updates, ev)
			}
		}
	}
	return vs
}

// outcome is what is on the cluster for a victim: the task result's label and our marker (one
// patch writes both), our Kubernetes Events on the Workflow, the record annotation.
type outcome struct {
	Completed, Marked, Recorded bool
	Events                      int
	EventCount                  int32
	// TaskResultGone: the controller deleted it (it does for a finished workflow).
	TaskResultGone bool
}

func (s *stack) outcomeOf(t *testing.T, v *victim) outcome {
	t.Helper()
	ctx := context.Background()
	var o outcome
	tr, err := s.e.Argo.ArgoprojV1alpha1().WorkflowTaskResults(v.wf.Namespace).Get(ctx, v.nodeID, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		o.TaskResultGone = true
		tr = &wfv1.WorkflowTaskResult{}
	case err != nil:
		t.Fatal(err)
	}
	o.Completed = tr.Labels[argoworkflow.LabelReportOutputsCompleted] == "true"
	// Our marker on the task result, written in the repair's own patch: an annotation (the record)
	// or a label of the same key (the step).
	o.Marked = tr.Annotations[argoworkflow.AnnotationRepaired] != "" || tr.Labels[argoworkflow.AnnotationRepaired] != ""
	wf, err := s.e.Argo.ArgoprojV1alpha1().Workflows(v.wf.Namespace).Get(ctx, v.wf.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o.Recorded = repair.HasRecord(wf, v.nodeID)
	o.Events, o.EventCount = s.eventsOf(t, v)
	return o
}

// eventsOf counts our PodDisrupted Events on the victim's Workflow, and their total count.
func (s *stack) eventsOf(t *testing.T, v *victim) (n int, count int32) {
	t.Helper()
	evs, err := s.e.Kube.CoreV1().Events(v.wf.Namespace).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + v.wf.Name})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs.Items {
		if ev.Reason == repair.EventReason && ev.Source.Component == argoworkflow.Component {
			n++
			count += ev.Count
		}
	}
	return n, count
}

// consistent checks what must hold at any moment, whatever failed: the label and our marker
// land together; the Event is created only after the repair; the record only after the Event.
func (o outcome) consistent() error {
	switch {
	case o.Completed != o.Marked:
		return fmt.Errorf("task result completed=%v but marker=%v: half a patch", o.Completed, o.Marked)
	case o.Events > 0 && !o.Completed:
		return fmt.Errorf("an Event without the repair")
	case o.Recorded && o.Events == 0:
		return fmt.Errorf("the record annotation without its Event")
	case o.Events > 1 || o.EventCount > 1:
		return fmt.Errorf("%d Events (count %d) for one repair", o.Events, o.EventCount)
	}
	return nil
}

func (o outcome) complete() bool { return o.Completed && o.Marked && o.Recorded && o.Events == 1 }

// --- The function in-process ----------------------------------------------------------------------

// fnOf gives func-go an instance whose Handle is the handler's.
type fnOf struct{ h *handlers.Handler }

func (f fnOf) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	return nil, f.h.Handle(ctx, e)
}

// inprocFn is the function built in the test process, served over HTTP, and the tap on its
// API calls.
type inprocFn struct {
	url string
	tap *apitap.Tap
}

// inproc builds the function as Start does (scenario.NewInProcess) against kubeconfig (the API
// server's, or the fault proxy's), logging at debug level into the stack's log directory, and
// serves it through func-go's CloudEvents HTTP stack. tune, when set, changes its configuration;
// before, when set, runs before each API call is sent.
func (s *stack) inproc(t *testing.T, name, kubeconfig string, tune func(*config.Config), before func(*http.Request)) *inprocFn {
	t.Helper()
	fn, err := scenario.NewInProcess(scenario.InProcessOptions{Kubeconfig: kubeconfig, Tune: tune, Before: before,
		LogPath: filepath.Join(s.c.LogDir(), "function-"+name+".log"), LogLevel: "debug"})
	if err != nil {
		t.Fatal(err)
	}
	url, stop, err := cesink.Serve(ce.New(fnOf{fn.Handler}).Handler)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return &inprocFn{url: url, tap: fn.Tap}
}

// deliver posts e as the broker does (binary mode) and returns the answer; a request that got
// none is answered 0 with the error as body.
func (f *inprocFn) deliver(ctx context.Context, e event.Event) (int, string) {
	code, body, err := cesink.Deliver(ctx, f.url, e, nil)
	if err != nil {
		return 0, err.Error()
	}
	return code, body
}

func (s *stack) faultProxy(t *testing.T, hold time.Duration) (*apitap.Proxy, string) {
	t.Helper()
	return faultProxy(t, s.c, hold)
}

// faultProxy starts an apitap.Proxy to c's API server (hold: how long its slow faults keep a
// call) and returns it with a kubeconfig that reaches the API server through it.
func faultProxy(t *testing.T, c *localcluster.Cluster, hold time.Duration) (*apitap.Proxy, string) {
	t.Helper()
	p, err := apitap.NewProxy(c.RESTConfig(), hold)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig-proxy")
	if err := localcluster.WriteKubeconfig(kubeconfig, p.URL, nil, ""); err != nil {
		t.Fatal(err)
	}
	return p, kubeconfig
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
