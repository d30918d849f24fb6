//go:build e2e

// TestResilience proves, on the local real control plane with the real Argo workflow-controller
// (ADH_E2E_RESILIENCE_ARGO, default v3.5.10: the version that never heals by itself, so a
// workflow that moves was moved by us), what the function must hold under re-delivery,
// races, API faults and scope:
//
//	go test -tags e2e -run TestResilience -v ./test/e2e/
//
// The function runs in-process: wiring.FromClients(cfg, clients, nil, log) behind func-go's own HTTP stack
// (ce.New, the CloudEvents SDK receiver), its client wrapped by a RoundTripper that logs (and,
// for the races, interferes with) every API call. The events are the real ones: the Knative
// ApiServerSource adapter watches the test namespaces and posts to a recorder, and each subtest
// delivers the recorded events itself, as often and in whatever order it needs.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	ce "knative.dev/func-go/cloudevents"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/clients"
	"function/config"
	"function/handlers"
	"function/localcluster"
	"function/localcluster/scenario"
	"function/record"
	"function/wiring"
	"function/workflowmeta"
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
	proxy := newFaultProxy(t, s.c.RESTConfig(), 6*time.Second)
	fn := s.inproc(t, "record-after-end", &rest.Config{Host: proxy.srv.URL}, func(c *config.Config) { c.EventTimeout = 2 * time.Second }, nil)
	vs := s.victims(t, []string{nsFault}, 2, scenario.Force, true, false)
	if code, body := deliver(ctx, fn.url, vs[0].del); code != http.StatusOK {
		t.Fatalf("fault-free repair answered %d %q", code, body)
	}
	pos := 0
	for _, p := range proxy.take() {
		if p.Method == http.MethodPost && p.resource() == "events" {
			pos = p.N
			break
		}
	}
	if pos == 0 {
		t.Fatal("a repair created no Event")
	}
	v := vs[1]
	proxy.arm(fault500, pos)
	code, body := deliver(ctx, fn.url, v.del)
	t.Logf("outage from call %d (POST events): answered %d %q; calls %s; left %s", pos, code, short(body, 120), describe(proxy.take()), state(s.outcomeOf(t, v)))
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
	proxy.disarm()
	t.Logf("workflow finished (%s) %.1f s into the outage; API back, event re-delivered", final, time.Since(began).Seconds())
	code, body = deliver(ctx, fn.url, v.del)
	o := s.outcomeOf(t, v)
	t.Logf("re-delivery: %d %q; calls %s; outcome %+v", code, short(body, 120), describe(proxy.take()), o)
	if code != http.StatusOK || !o.Recorded || o.Events != 1 {
		t.Errorf("the repair of %s is not recorded: record annotation %v, %d Events (want both, once)", v.wf.Name, o.Recorded, o.Events)
	}
}

// startStack starts the control plane (Argo ADH_E2E_RESILIENCE_ARGO, default v3.5.10), the
// namespaces, and the adapter watching their workflow pods into a recorder; all stopped when
// the test ends.
func startStack(t *testing.T, namespaces ...string) *stack {
	t.Helper()
	version := env("ADH_E2E_RESILIENCE_ARGO", "v3.5.10")
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{ArgoVersion: version, Nodes: 3, Logf: t.Logf, KeepDir: true})
	if err != nil {
		t.Fatal(err)
	}
	stopSignal := c.StopOnSignal(nil)
	s := &stack{c: c, t: t}
	t.Cleanup(func() {
		stopSignal()
		c.Stop()
		if t.Failed() {
			t.Logf("logs kept in %s", c.LogDir())
		} else {
			_ = os.RemoveAll(c.Dir())
		}
	})
	if s.e, err = scenario.NewEnv(c, version, 0, t.Logf); err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		if err := s.e.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	s.rec = newRecorder()
	t.Cleanup(s.rec.srv.Close)
	if err := c.StartAdapter(s.rec.srv.URL, namespaces, workflowmeta.LabelWorkflow); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.StopAdapter)
	return s
}

// stack is the running control plane, the scenario helpers and the event recorder.
type stack struct {
	c   *localcluster.Cluster
	e   *scenario.Env
	rec *recorder
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
			for _, ev := range s.rec.forPod(ns, v.pod.Name) {
				if ev.Type() == "dev.knative.apiserver.resource.delete" {
					v.del = ev
					return true
				}
			}
			return false
		}); err != nil {
			t.Fatalf("no delete event for pod %s/%s from the adapter", ns, v.pod.Name)
		}
		for _, ev := range s.rec.forPod(ns, v.pod.Name) {
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
	o.Completed = tr.Labels[workflowmeta.LabelReportOutputsCompleted] == "true"
	// Our marker on the task result, written in the repair's own patch: an annotation (the record)
	// or a label of the same key (the step).
	o.Marked = tr.Annotations[workflowmeta.AnnotationRepaired] != "" || tr.Labels[workflowmeta.AnnotationRepaired] != ""
	wf, err := s.e.Argo.ArgoprojV1alpha1().Workflows(v.wf.Namespace).Get(ctx, v.wf.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o.Recorded = record.HasRecord(wf, v.nodeID)
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
		if ev.Reason == record.EventReason && ev.Source.Component == workflowmeta.Component {
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

// --- 1. The same delete event, 10 times, concurrently, reversed with its updates ----------------

func (s *stack) duplicateDeliveries(t *testing.T) {
	ctx := context.Background()
	v := s.victims(t, []string{nsDup}, 1, scenario.Evict, true, false)[0]
	fn := s.inproc(t, "dup", s.c.RESTConfig(), nil, nil)
	// Reverse order: the delete first (10 copies), then the updates from the last to the first.
	batch := []event.Event{}
	for range 10 {
		batch = append(batch, v.del)
	}
	for i := len(v.updates) - 1; i >= 0; i-- {
		batch = append(batch, v.updates[i])
	}
	t.Logf("pod %s evicted: delivering its delete event ×10 and its %d deletionTimestamp updates, reversed, at once", v.pod.Name, len(v.updates))
	if len(v.updates) == 0 {
		t.Errorf("the adapter sent no update with a deletionTimestamp for an evicted pod")
	}
	codes := make([]int, len(batch))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range batch {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			codes[i], _ = deliver(ctx, fn.url, batch[i])
		}(i)
	}
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)
	byCode := map[int]int{}
	for _, c := range codes {
		byCode[c]++
	}
	calls := fn.tap.calls()
	trPatches, wfPatches, eventPosts := countOK(calls, "PATCH", "workflowtaskresults"), countOK(calls, "PATCH", "workflows"), countOK(calls, "POST", "events")
	t.Logf("%d deliveries in %s: answers %v; %d API calls: %s", len(batch), took.Round(time.Millisecond), byCode, len(calls), summarize(calls))
	if n := byCode[http.StatusServiceUnavailable] + byCode[http.StatusInternalServerError]; n > 0 {
		t.Errorf("%d deliveries answered 5xx (%v): the broker would re-deliver them", n, byCode)
	}
	if byCode[http.StatusOK] != len(batch) {
		t.Errorf("answers %v, want %d × 200", byCode, len(batch))
	}
	// One repair write, one Event. The record on the Workflow is written at least once: a patch
	// that carries the resourceVersion is accepted once, one of its own key alone (idempotent,
	// no precondition) may be accepted by several deliveries, with the same content.
	if trPatches != 1 || eventPosts != 1 || wfPatches < 1 {
		t.Errorf("accepted writes: %d task-result patches, %d Event creations, %d workflow patches; want exactly 1, 1, and at least 1", trPatches, eventPosts, wfPatches)
	}
	if guarded(calls, "PATCH", "workflows") && wfPatches != 1 {
		t.Errorf("%d workflow patches carrying a resourceVersion accepted, want 1", wfPatches)
	}
	o := s.outcomeOf(t, v)
	if err := o.consistent(); err != nil || !o.complete() {
		t.Errorf("outcome %+v, %v; want the repair recorded once", o, err)
	}
	moved := time.Duration(-1)
	if err := waitFor(ctx, 90*time.Second, func() bool {
		wf, err := s.e.Argo.ArgoprojV1alpha1().Workflows(nsDup).Get(ctx, v.wf.Name, metav1.GetOptions{})
		if err == nil && wf.Status.Phase != wfv1.WorkflowRunning && wf.Status.Phase != wfv1.WorkflowPending && wf.Status.Phase != "" {
			moved = time.Since(began)
			t.Logf("workflow %s left Running (%s %q) %.1f s after the deliveries", wf.Name, wf.Status.Phase, wf.Status.Message, moved.Seconds())
			return true
		}
		return false
	}); err != nil {
		t.Errorf("workflow %s still Running 90 s after the repair", v.wf.Name)
	}
	// The controller deletes the task results of a finished workflow: count the Events only.
	if n, count := s.eventsOf(t, v); n != 1 || count != 1 {
		t.Errorf("after the controller moved on: %d Events (count %d), want 1", n, count)
	}
}

// --- 2. Our patch racing the controller's update of the same objects ------------------------------

func (s *stack) conflictRace(t *testing.T) {
	ctx := context.Background()
	vs := s.victims(t, []string{nsRace}, 3, scenario.Force, true, true)

	t.Run("our workflow patch loses to a controller update", func(t *testing.T) {
		v := vs[0]
		var once sync.Once
		var interfered error
		// Just before our first PATCH of the Workflow: a controller-style Update (whole object,
		// the resourceVersion its informer holds): a patch carrying the version we read is stale.
		fn := s.inproc(t, "race-wf", s.c.RESTConfig(), nil, func(r *http.Request) {
			if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/workflows/"+v.wf.Name) {
				once.Do(func() { interfered = s.controllerUpdate(ctx, v.wf, "before-our-patch") })
			}
		})
		code, body := deliver(ctx, fn.url, v.del)
		if interfered != nil {
			t.Fatalf("simulated controller update: %v", interfered)
		}
		calls := fn.tap.calls()
		t.Logf("answer %d %q; calls: %s", code, body, summarize(calls))
		if code != http.StatusOK {
			t.Errorf("answer %d %q, want 200 after re-reading", code, body)
		}
		// A patch carrying the resourceVersion it read must lose (409), re-read and win: [409 200]
		// (one more 409 when the real controller also wrote in between). A patch of our own key
		// alone, without a precondition, cannot conflict and must simply land.
		got := codesOf(calls, "PATCH", "workflows")
		if guarded(calls, "PATCH", "workflows") {
			if len(got) < 2 || got[0] != 409 || got[len(got)-1] != 200 {
				t.Errorf("workflow patches answered %v, want 409 first (lost the race), then re-read and 200", got)
			}
		} else {
			t.Logf("our workflow patch carries no resourceVersion: nothing to lose a race on (answers %v)", got)
			if len(got) == 0 || got[len(got)-1] != 200 {
				t.Errorf("workflow patches answered %v, want 200", got)
			}
		}
		s.assertBoth(t, v, "before-our-patch")
	})

	t.Run("our task-result patch loses to a concurrent update", func(t *testing.T) {
		v := vs[1]
		// The pod's delete as a Reference-mode source sends it (no object, so no UIDs): the
		// handler finds the task result, reads everything and writes the task result with the
		// resourceVersion it read.
		ev := referenceEvent(t, v.del, v.pod)
		var once sync.Once
		var interfered error
		fn := s.inproc(t, "race-tr", s.c.RESTConfig(), nil, func(r *http.Request) {
			if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/workflowtaskresults/"+v.nodeID) {
				once.Do(func() {
					patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"concurrent"}}}`, controllerMark)
					_, interfered = s.c.Dynamic().Resource(localcluster.WorkflowTaskResultGVR).Namespace(v.wf.Namespace).
						Patch(ctx, v.nodeID, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
				})
			}
		})
		code, body := deliver(ctx, fn.url, ev)
		if interfered != nil {
			t.Fatal(interfered)
		}
		calls := fn.tap.calls()
		t.Logf("answer %d %q; calls: %s", code, body, summarize(calls))
		if code != http.StatusOK {
			t.Errorf("answer %d %q, want 200 after re-observing", code, body)
		}
		// The resourceVersion as precondition: [409 200], the task result re-observed in between.
		if got := codesOf(calls, "PATCH", "workflowtaskresults"); !guarded(calls, "PATCH", "workflowtaskresults") || !slices.Equal(got, []int{409, 200}) {
			t.Errorf("task-result patches answered %v (resourceVersion sent: %v), want [409 200] with the resourceVersion", got, guarded(calls, "PATCH", "workflowtaskresults"))
		}
		tr, err := s.e.Argo.ArgoprojV1alpha1().WorkflowTaskResults(v.wf.Namespace).Get(ctx, v.nodeID, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr.Annotations[controllerMark] != "concurrent" || tr.Labels[workflowmeta.LabelReportOutputsCompleted] != "true" {
			t.Errorf("task result lost a write: annotations %v labels %v", tr.Annotations, tr.Labels)
		}
		if o := s.outcomeOf(t, v); !o.complete() {
			t.Errorf("outcome %+v, want the repair recorded", o)
		}
	})

	t.Run("the controller's stale update after our patch gets 409 and re-applies", func(t *testing.T) {
		v := vs[2]
		// The controller's informer copy, read before our repair.
		stale, err := s.c.Dynamic().Resource(localcluster.WorkflowGVR).Namespace(v.wf.Namespace).Get(ctx, v.wf.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fn := s.inproc(t, "race-stale", s.c.RESTConfig(), nil, nil)
		if code, body := deliver(ctx, fn.url, v.del); code != http.StatusOK {
			t.Fatalf("answer %d %q", code, body)
		}
		// Its update with that copy's resourceVersion must be refused, not overwrite our record.
		mine := stale.DeepCopy()
		setAnnotation(mine, controllerMark, "after-our-patch")
		_, err = s.c.Dynamic().Resource(localcluster.WorkflowGVR).Namespace(v.wf.Namespace).Update(ctx, mine, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			t.Fatalf("controller update with the stale resourceVersion %s: %v, want 409 Conflict", stale.GetResourceVersion(), err)
		}
		// persistUpdates: re-GET, re-apply its own change, update.
		if err := s.controllerUpdate(ctx, v.wf, "after-our-patch"); err != nil {
			t.Fatalf("re-applied controller update: %v", err)
		}
		s.assertBoth(t, v, "after-our-patch")
	})
}

// controllerUpdate does what the controller's persistUpdates does, with its own change: read
// the workflow as its informer has it, change it, Update the whole object with that
// resourceVersion (retried on 409 after a re-read, as Argo does).
func (s *stack) controllerUpdate(ctx context.Context, wf *wfv1.Workflow, mark string) error {
	res := s.c.Dynamic().Resource(localcluster.WorkflowGVR).Namespace(wf.Namespace)
	var err error
	for range 5 {
		var cur *unstructured.Unstructured
		if cur, err = res.Get(ctx, wf.Name, metav1.GetOptions{}); err != nil {
			return err
		}
		setAnnotation(cur, controllerMark, mark)
		if _, err = res.Update(ctx, cur, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

func setAnnotation(u *unstructured.Unstructured, k, v string) {
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[k] = v
	u.SetAnnotations(a)
}

// assertBoth checks that neither writer lost anything: the controller's mark, its status (the
// node map it keeps), and our repair and record.
func (s *stack) assertBoth(t *testing.T, v *victim, mark string) {
	t.Helper()
	wf, err := s.e.Argo.ArgoprojV1alpha1().Workflows(v.wf.Namespace).Get(context.Background(), v.wf.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if wf.Annotations[controllerMark] != mark {
		t.Errorf("the controller's update was lost: annotations %v", wf.Annotations)
	}
	if _, ok := wf.Status.Nodes[v.nodeID]; !ok || wf.Status.Phase == "" || wf.Labels[workflowmeta.LabelPhase] == "" {
		t.Errorf("controller-side fields lost: phase %q, phase label %q, node %s present %v", wf.Status.Phase, wf.Labels[workflowmeta.LabelPhase], v.nodeID, ok)
	}
	if o := s.outcomeOf(t, v); !o.complete() {
		t.Errorf("our repair was lost: %+v", o)
	}
}

// --- 3. API faults between the function and the API server ---------------------------------------

type faultKind string

const (
	// faultReset closes the connection before forwarding: the API server never sees the call.
	faultReset faultKind = "reset"
	// faultResetAfter forwards the call, then closes the connection: done, but no answer.
	faultResetAfter faultKind = "reset-after-forward"
	// fault500 answers 500 InternalError.
	fault500 faultKind = "500"
	// fault429 answers 429 TooManyRequests with Retry-After: 1 (client-go retries those).
	fault429 faultKind = "429"
	// faultSlow holds the call past the handler's deadline, then drops it: never forwarded.
	faultSlow faultKind = "slow"
	// faultSlowAfter forwards the call, then answers after the deadline: done, answered too late.
	faultSlowAfter faultKind = "slow-after-forward"
)

func (s *stack) apiFaults(t *testing.T) {
	ctx := context.Background()
	kinds := []faultKind{faultReset, faultResetAfter, fault500, fault429, faultSlow, faultSlowAfter}
	const timeout = 2 * time.Second // ADH_EVENT_TIMEOUT for these deliveries
	proxy := newFaultProxy(t, s.c.RESTConfig(), 3*timeout)
	fn := s.inproc(t, "faults", &rest.Config{Host: proxy.srv.URL}, func(c *config.Config) { c.EventTimeout = timeout }, nil)

	// The calls of one repair, measured on a spare victim without a fault: the outage starts at
	// each of them in turn (at most the first maxPositions).
	const maxPositions = 6
	vs := s.victims(t, []string{nsFault}, 1+len(kinds)*maxPositions, scenario.Force, true, true)
	if code, body := deliver(ctx, fn.url, vs[0].del); code != http.StatusOK {
		t.Fatalf("fault-free repair answered %d %q", code, body)
	}
	seq := proxy.take()
	var names []string
	for _, p := range seq {
		names = append(names, p.call())
	}
	t.Logf("the calls of one repair, through the proxy: %s", strings.Join(names, ", "))
	positions := min(len(seq), maxPositions)
	if positions < 3 {
		t.Fatalf("a repair made %d calls: %v", len(seq), names)
	}
	if o := s.outcomeOf(t, vs[0]); !o.complete() {
		t.Fatalf("fault-free repair: %+v", o)
	}

	i := 1
	for _, kind := range kinds {
		for n := 1; n <= positions; n++ {
			v := vs[i]
			i++
			t.Run(fmt.Sprintf("%s/at-%d-%s", kind, n, names[n-1]), func(t *testing.T) {
				proxy.arm(kind, n)
				began := time.Now()
				code, body := deliver(ctx, fn.url, v.del)
				took := time.Since(began)
				proxy.disarm()
				log := proxy.take()
				if code != http.StatusServiceUnavailable {
					t.Errorf("answer %d %q, want 503 (the broker re-delivers)", code, body)
				}
				// What reached the API server decides what may be on it: nothing else.
				var want outcome
				for _, p := range log {
					if p.Method == http.MethodGet || p.Upstream < 200 || p.Upstream > 299 {
						continue
					}
					switch p.resource() {
					case "workflowtaskresults":
						want.Completed, want.Marked = true, true
					case "events":
						want.Events, want.EventCount = 1, 1
					case "workflows":
						want.Recorded = true
					}
				}
				got := s.outcomeOf(t, v)
				if err := got.consistent(); err != nil {
					t.Errorf("half-written after the fault: %v (%+v)", err, got)
				}
				if got != want {
					t.Errorf("after the fault: %+v, want %+v (from what reached the API server: %s)", got, want, describe(log))
				}
				// The API is back: the re-delivered event completes the repair, recorded once.
				code2, body2 := deliver(ctx, fn.url, v.del)
				done := s.outcomeOf(t, v)
				if code2 != http.StatusOK || !done.complete() {
					t.Errorf("re-delivery: %d %q, outcome %+v; want 200 and the repair recorded once", code2, body2, done)
				}
				t.Logf("faulted: %d in %s (%s), left %s; re-delivered: %d (%d calls)", code, took.Round(time.Millisecond), short(body, 120), state(got), code2, len(proxy.take()))
			})
		}
	}
}

func state(o outcome) string {
	switch {
	case o.complete():
		return "repaired and recorded"
	case o.Completed && o.Events == 1:
		return "repaired, Event created, record pending"
	case o.Completed:
		return "repaired, record pending"
	case o == outcome{}:
		return "nothing written"
	}
	return fmt.Sprintf("%+v", o)
}

// --- 5. Scope: never written -----------------------------------------------------------------------

func (s *stack) scope(t *testing.T) {
	ctx := context.Background()
	vs := s.victims(t, []string{nsScope, nsOutside}, 2, scenario.Force, true, true)
	inScope, outside := vs[0], vs[1]
	source := inScope.del.Source() // the API server URL, as the adapter names it
	fn := s.inproc(t, "scope", s.c.RESTConfig(), func(c *config.Config) {
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
		{"pod and workflow of another controller instance", s.syntheticDelete(t, foreign, foreignNode, source, map[string]string{workflowmeta.LabelInstanceID: "team-b"}),
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
			fn.tap.reset()
			code, body := deliver(ctx, fn.url, tc.ev)
			calls := fn.tap.calls()
			t.Logf("answer %d %q; calls: %s", code, short(body, 160), summarize(calls))
			if code != tc.status {
				t.Errorf("answer %d %q, want %d", code, body, tc.status)
			}
			for _, c := range calls {
				if c.Method != http.MethodGet && c.Code >= 200 && c.Code < 300 {
					t.Errorf("wrote: %s %s → %d", c.Method, c.Path, c.Code)
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
		if code, body := deliver(ctx, fn.url, inScope.del); code != http.StatusOK {
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
			workflowmeta.LabelInstanceID: instance, workflowmeta.LabelPhase: "Running"}},
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
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, workflowmeta.LabelInstanceID, instance)
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
			Labels:          map[string]string{workflowmeta.LabelWorkflow: wf.Name},
			Annotations:     map[string]string{workflowmeta.AnnotationNodeID: nodeID, workflowmeta.AnnotationNodeName: wf.Name}},
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

// --- The function in-process ----------------------------------------------------------------------

// fnOf gives func-go an instance whose Handle is the handler's.
type fnOf struct{ h *handlers.Handler }

func (f fnOf) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	return f.h.Handle(ctx, e)
}

type inprocFn struct {
	url string
	tap *apiLog
}

// inproc builds the function as Start does — config.Load, clients.New, wiring.FromClients — over base
// (the API server, or the fault proxy), and serves it through func-go's HTTP stack. before, when
// set, runs in the client's RoundTripper before each API call is sent.
func (s *stack) inproc(t *testing.T, name string, base *rest.Config, mod func(*config.Config), before func(*http.Request)) *inprocFn {
	t.Helper()
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rc := rest.CopyConfig(base)
	rc.QPS, rc.Burst, rc.Timeout, rc.UserAgent = cfg.KubeQPS, cfg.KubeBurst, cfg.EventTimeout, workflowmeta.Component
	log := &apiLog{before: before}
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &tapRT{next: rt, log: log} })
	cs, err := clients.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	zc.OutputPaths = []string{filepath.Join(s.c.LogDir(), "function-"+name+".log")}
	zc.Sampling = nil
	zl, err := zc.Build()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ce.New(fnOf{wiring.FromClients(cfg, cs, nil, zl.Sugar()).Handler}).Handler)
	t.Cleanup(func() { srv.Close(); _ = zl.Sync() })
	return &inprocFn{url: srv.URL, tap: log}
}

// apiCall is one API request the function made and how it ended.
type apiCall struct {
	Method, Path string
	Code         int // 0: no answer
	Err          string
	// Guarded: the write's body carries metadata.resourceVersion (a 409 precondition).
	Guarded bool
}

func (c apiCall) resource() string { return resourceOf(c.Path) }

// resourceOf is the resource segment of an API path (…/namespaces/<ns>/<resource>/<name>).
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := len(parts) - 1; i > 0; i-- {
		if parts[i-1] == "namespaces" && i+1 < len(parts) {
			return parts[i+1]
		}
	}
	if len(parts) >= 2 {
		return parts[len(parts)-2]
	}
	return path
}

type apiLog struct {
	mu     sync.Mutex
	log    []apiCall
	before func(*http.Request)
}

func (l *apiLog) calls() []apiCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.log)
}

func (l *apiLog) reset() {
	l.mu.Lock()
	l.log = nil
	l.mu.Unlock()
}

type tapRT struct {
	next http.RoundTripper
	log  *apiLog
}

func (t *tapRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.log.before != nil {
		t.log.before(r)
	}
	c := apiCall{Method: r.Method, Path: r.URL.Path}
	if r.Method != http.MethodGet && r.GetBody != nil {
		if body, err := r.GetBody(); err == nil {
			b, _ := io.ReadAll(body)
			c.Guarded = bytes.Contains(b, []byte(`"resourceVersion":"`)) && !bytes.Contains(b, []byte(`"resourceVersion":""`))
		}
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		c.Err = err.Error()
	} else {
		c.Code = resp.StatusCode
	}
	t.log.mu.Lock()
	t.log.log = append(t.log.log, c)
	t.log.mu.Unlock()
	return resp, err
}

func countOK(calls []apiCall, method, resource string) int {
	n := 0
	for _, c := range calls {
		if c.Method == method && c.resource() == resource && c.Code >= 200 && c.Code < 300 {
			n++
		}
	}
	return n
}

// guarded reports whether the first such write carried a resourceVersion.
func guarded(calls []apiCall, method, resource string) bool {
	for _, c := range calls {
		if c.Method == method && c.resource() == resource {
			return c.Guarded
		}
	}
	return false
}

func codesOf(calls []apiCall, method, resource string) []int {
	var out []int
	for _, c := range calls {
		if c.Method == method && c.resource() == resource {
			out = append(out, c.Code)
		}
	}
	return out
}

// summarize counts calls by "METHOD resource code".
func summarize(calls []apiCall) string {
	m := map[string]int{}
	for _, c := range calls {
		k := fmt.Sprintf("%s %s %d", c.Method, c.resource(), c.Code)
		if c.Err != "" {
			k = fmt.Sprintf("%s %s error", c.Method, c.resource())
		}
		m[k]++
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%d", k, m[k])
	}
	return b.String()
}

// deliver posts e as the broker does (binary mode) and returns the answer.
func deliver(ctx context.Context, url string, e event.Event) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(&e), req); err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// --- The recorder: the adapter's sink ----------------------------------------------------------------

type recorder struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []event.Event
}

func newRecorder() *recorder {
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ev, err := binding.ToEvent(req.Context(), cehttp.NewMessageFromHttpRequest(req))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, *ev)
		r.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	return r
}

// forPod returns the events about one pod, in the order received.
func (r *recorder) forPod(ns, name string) []event.Event {
	subject := "/apis/v1/namespaces/" + ns + "/pods/" + name
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Event
	for _, e := range r.events {
		if e.Subject() == subject {
			out = append(out, e.Clone())
		}
	}
	return out
}

// --- The fault-injecting proxy -------------------------------------------------------------------------

// proxied is one request through the proxy.
type proxied struct {
	N            int
	Method, Path string
	Fault        faultKind // "" when passed through
	Upstream     int       // the API server's status, 0 when not forwarded
}

func (p proxied) resource() string { return resourceOf(p.Path) }
func (p proxied) call() string     { return p.Method + "-" + p.resource() }

func describe(log []proxied) string {
	var parts []string
	for _, p := range log {
		s := fmt.Sprintf("#%d %s %s", p.N, p.Method, p.resource())
		if p.Fault != "" {
			s += " [" + string(p.Fault) + "]"
		}
		if p.Upstream != 0 {
			s += fmt.Sprintf(" → API %d", p.Upstream)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// faultProxy is an HTTP reverse proxy to the API server (it holds the credentials) that, when
// armed, injects one kind of fault into every request from the Nth on: an outage that starts at
// a chosen call of the repair and lasts until disarmed.
type faultProxy struct {
	srv  *httptest.Server
	rp   *httputil.ReverseProxy
	hold time.Duration
	mu   sync.Mutex
	n    int
	from int
	kind faultKind
	log  []*proxied
}

func newFaultProxy(t *testing.T, admin *rest.Config, hold time.Duration) *faultProxy {
	t.Helper()
	up, err := url.Parse(admin.Host)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := rest.TransportFor(admin)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{hold: hold}
	p.rp = &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.Out.Host = up.Host },
		Transport: rt,
		ErrorLog:  nil,
	}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *faultProxy) arm(kind faultKind, from int) {
	p.mu.Lock()
	p.n, p.from, p.kind, p.log = 0, from, kind, nil
	p.mu.Unlock()
}

func (p *faultProxy) disarm() {
	p.mu.Lock()
	p.from = 0
	p.mu.Unlock()
}

// take returns the requests since the last take (or arm) and starts a new count.
func (p *faultProxy) take() []proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]proxied, len(p.log))
	for i, e := range p.log {
		out[i] = *e
	}
	p.log, p.n = nil, 0
	return out
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The entry is logged at once and completed under the lock: a test reading the log right
	// after the function answered sees every call, and the API server's answer of each call
	// that reached it (that answer always comes before the function's).
	p.mu.Lock()
	p.n++
	entry := &proxied{N: p.n, Method: r.Method, Path: r.URL.Path}
	if p.from > 0 && p.n >= p.from {
		entry.Fault = p.kind
	}
	p.log = append(p.log, entry)
	p.mu.Unlock()
	upstream := func(code int) {
		p.mu.Lock()
		entry.Upstream = code
		p.mu.Unlock()
	}
	// forward sends the request to the API server even if the client gives up meanwhile, into
	// a recorder, and returns it.
	forward := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
		upstream(rec.Code)
		return rec
	}
	switch entry.Fault {
	case "":
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		upstream(rec.Code)
		copyResponse(w, rec)
	case faultReset:
		hijackClose(w)
	case faultResetAfter:
		forward()
		hijackClose(w)
	case fault500:
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "injected: etcdserver: request timed out")
	case fault429:
		w.Header().Set("Retry-After", "1")
		writeStatus(w, http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests, "injected: too many requests")
	case faultSlow:
		select {
		case <-r.Context().Done(): // the client gave up: the call never reaches the API server
		case <-time.After(p.hold):
			writeStatus(w, http.StatusGatewayTimeout, metav1.StatusReasonTimeout, "injected: slow")
		}
	case faultSlowAfter:
		rec := forward()
		select {
		case <-r.Context().Done():
		case <-time.After(p.hold):
			copyResponse(w, rec)
		}
	}
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: msg, Reason: reason, Code: int32(code)}
	b, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.Copy(w, bytes.NewReader(b))
}
