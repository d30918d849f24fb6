//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/apitap"
	"function/internal/localcluster/scenario"
)

// duplicateDeliveries delivers the same delete event 10 times at once, with its updates in
// reverse order: one repair write and one Event must come of it, every delivery answered 200.
func (s *stack) duplicateDeliveries(t *testing.T) {
	ctx := context.Background()
	v := s.victims(t, []string{nsDup}, 1, scenario.Evict, true, false)[0]
	fn := s.inproc(t, "dup", s.c.Kubeconfig(), nil, nil)
	// Reverse order: the delete first (10 copies), then the updates from the last to the first.
	batch := []event.Event{}
	for range 10 {
		batch = append(batch, v.del)
	}
	for i := len(v.updates) - 1; i >= 0; i-- {
		batch = append(batch, v.updates[i])
	}
	// The shipped Triggers deliver no pod update (docs/scale-to-zero.md): v.updates holds the
	// ones shippedStream let through, none as shipped.
	t.Logf("pod %s evicted: delivering its delete event ×10 and its %d deletionTimestamp updates, reversed, at once", v.pod.Name, len(v.updates))
	codes := make([]int, len(batch))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range batch {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			codes[i], _ = fn.deliver(ctx, batch[i])
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
	calls := fn.tap.Calls()
	trPatches, wfPatches, eventPosts := apitap.Accepted(calls, "PATCH", "workflowtaskresults"), apitap.Accepted(calls, "PATCH", "workflows"), apitap.Accepted(calls, "POST", "events")
	t.Logf("%d deliveries in %s: answers %v; %d API calls: %s", len(batch), took.Round(time.Millisecond), byCode, len(calls), apitap.Summary(calls))
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
	if apitap.Guarded(calls, "PATCH", "workflows") && wfPatches != 1 {
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

// conflictRace races our patches with the controller's updates of the same objects, both
// ways: neither writer may lose anything.
func (s *stack) conflictRace(t *testing.T) {
	ctx := context.Background()
	vs := s.victims(t, []string{nsRace}, 3, scenario.Force, true, true)

	t.Run("our workflow patch loses to a controller update", func(t *testing.T) {
		v := vs[0]
		var once sync.Once
		var interfered error
		// Just before our first PATCH of the Workflow: a controller-style Update (whole object,
		// the resourceVersion its informer holds): a patch carrying the version we read is stale.
		fn := s.inproc(t, "race-wf", s.c.Kubeconfig(), nil, func(r *http.Request) {
			if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/workflows/"+v.wf.Name) {
				once.Do(func() { interfered = s.controllerUpdate(ctx, v.wf, "before-our-patch") })
			}
		})
		code, body := fn.deliver(ctx, v.del)
		if interfered != nil {
			t.Fatalf("simulated controller update: %v", interfered)
		}
		calls := fn.tap.Calls()
		t.Logf("answer %d %q; calls: %s", code, body, apitap.Summary(calls))
		if code != http.StatusOK {
			t.Errorf("answer %d %q, want 200 after re-reading", code, body)
		}
		// A patch carrying the resourceVersion it read must lose (409), re-read and win: [409 200]
		// (one more 409 when the real controller also wrote in between). A patch of our own key
		// alone, without a precondition, cannot conflict and must simply land.
		got := apitap.Statuses(calls, "PATCH", "workflows")
		if apitap.Guarded(calls, "PATCH", "workflows") {
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
		// resourceVersion it read. A reference carries no last status, so the gate waits for the
		// controller to mark the node (docs/safety.md, rule 4): the event is delivered once it has,
		// as a re-delivery would find it.
		if err := waitFor(ctx, 30*time.Second, func() bool {
			wf, err := s.e.Argo.ArgoprojV1alpha1().Workflows(v.wf.Namespace).Get(ctx, v.wf.Name, metav1.GetOptions{})
			n := wf.Status.Nodes[v.nodeID]
			return err == nil && (n.Phase == wfv1.NodeError || n.Phase == wfv1.NodeFailed)
		}); err != nil {
			t.Fatalf("the controller did not mark node %s of %s within 30 s", v.nodeID, v.wf.Name)
		}
		ev := referenceEvent(t, v.del, v.pod)
		var once sync.Once
		var interfered error
		fn := s.inproc(t, "race-tr", s.c.Kubeconfig(), nil, func(r *http.Request) {
			if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/workflowtaskresults/"+v.nodeID) {
				once.Do(func() {
					patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"concurrent"}}}`, controllerMark)
					_, interfered = s.c.Dynamic().Resource(localcluster.WorkflowTaskResultGVR).Namespace(v.wf.Namespace).
						Patch(ctx, v.nodeID, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
				})
			}
		})
		code, body := fn.deliver(ctx, ev)
		if interfered != nil {
			t.Fatal(interfered)
		}
		calls := fn.tap.Calls()
		t.Logf("answer %d %q; calls: %s", code, body, apitap.Summary(calls))
		if code != http.StatusOK {
			t.Errorf("answer %d %q, want 200 after re-observing", code, body)
		}
		// The resourceVersion as precondition: [409 200], the task result re-observed in between.
		if got := apitap.Statuses(calls, "PATCH", "workflowtaskresults"); !apitap.Guarded(calls, "PATCH", "workflowtaskresults") || !slices.Equal(got, []int{409, 200}) {
			t.Errorf("task-result patches answered %v (resourceVersion sent: %v), want [409 200] with the resourceVersion", got, apitap.Guarded(calls, "PATCH", "workflowtaskresults"))
		}
		tr, err := s.e.Argo.ArgoprojV1alpha1().WorkflowTaskResults(v.wf.Namespace).Get(ctx, v.nodeID, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr.Annotations[controllerMark] != "concurrent" || tr.Labels[argoworkflow.LabelReportOutputsCompleted] != "true" {
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
		fn := s.inproc(t, "race-stale", s.c.Kubeconfig(), nil, nil)
		if code, body := fn.deliver(ctx, v.del); code != http.StatusOK {
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
	if _, ok := wf.Status.Nodes[v.nodeID]; !ok || wf.Status.Phase == "" || wf.Labels[argoworkflow.LabelPhase] == "" {
		t.Errorf("controller-side fields lost: phase %q, phase label %q, node %s present %v", wf.Status.Phase, wf.Labels[argoworkflow.LabelPhase], v.nodeID, ok)
	}
	if o := s.outcomeOf(t, v); !o.complete() {
		t.Errorf("our repair was lost: %+v", o)
	}
}
