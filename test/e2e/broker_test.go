//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/argoworkflow"
	"function/internal/localcluster"
	"function/internal/localcluster/apitap"
	"function/internal/localcluster/cesink"
	"function/internal/localcluster/scenario"
	"function/internal/manifests"
)

const (
	// fnService is the Knative Service the shipped Triggers and the Broker's dead-letter sink
	// name: the function.
	fnService = "argo-disruption-handler"
	// failingService stands for a subscriber that answers 500 to everything; failingType is the
	// event type its test Trigger takes.
	failingService = "e2e-always-500"
	failingType    = "dev.adh.e2e.always-500"
	failingAnswer  = "e2e stand-in subscriber: always 500"
	podDeleteType  = "dev.knative.apiserver.resource.delete"
)

// TestBrokerDataPlane runs the real Knative Eventing broker data plane (ingress, InMemoryChannel
// dispatcher, filter; see docs/dev/broker-local.md) with the shipped Broker and Triggers of
// the chart between the ApiServerSource adapter and the function, on Argo
// ADH_E2E_BROKER_ARGO (default v3.5.10, which never heals a deleted pod by itself):
//   - a workflow pod force-deleted is repaired through adapter → ingress → channel → filter →
//     function, and the function received the delete event with the filter's Kn-Namespace and the
//     ingress's knativearrivaltime;
//   - an event from a source the function does not allow (403, not retried) and one for a
//     subscriber that always answers 500 (retried as the Broker's delivery says) both reach the
//     Broker's dead-letter sink, the function, with knativeerrorcode; the time the ingress POST is
//     held is measured.
func TestBrokerDataPlane(t *testing.T) {
	version := env("ADH_E2E_BROKER_ARGO", "v3.5.10")
	ctx := context.Background()
	bin, c, e := functionStack(ctx, t, localcluster.Options{ArgoVersion: version, Nodes: 1}, 90*time.Second)
	if err := e.EnsureNamespace(ctx, nsWith); err != nil {
		t.Fatal(err)
	}
	// The adapter names its events after the API server it watches (https://127.0.0.1:<port>).
	// The function reaches the API server through a proxy that can play an outage.
	proxy, viaProxy := faultProxy(t, c, 5*time.Second)
	fn, err := scenario.StartFunction(ctx, bin, viaProxy, filepath.Join(c.LogDir(), "function.log"),
		map[string]string{"ADH_NAMESPACES": nsWith, "ADH_ALLOWED_SOURCES": "https://127.0.0.1:*"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fn.Stop)
	toFn := startSink(t)(cesink.Forward(fn.URL))
	failing := startSink(t)(cesink.Answer(http.StatusInternalServerError, failingAnswer))
	broker, triggers := shippedBroker(t)
	triggers = append(triggers, failingTrigger(broker))
	b, err := c.StartBroker(ctx, localcluster.BrokerOptions{Broker: broker, Triggers: triggers,
		Addresses: map[string]string{fnService: toFn.URL, failingService: failing.URL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("broker figure: data plane started and canary delivered in %.2f s", b.Ready.Seconds())
	t.Logf("broker: ingress %s, channel %s, workflow-pods delivery %v", b.IngressURL, b.ChannelURL, b.Subscribers["workflow-pods"].Delivery)

	t.Run("pod deletion through the broker", func(t *testing.T) {
		podDeletionThroughBroker(ctx, t, c, e, fn, b, toFn)
	})
	t.Run("dead letters", func(t *testing.T) {
		deadLetters(t, fn, b, broker, toFn, failing, c.RESTConfig().Host)
	})
	t.Run("API outage during a burst", func(t *testing.T) {
		outageThroughBroker(ctx, t, c, e, proxy, b, toFn)
	})
}

// outageThroughBroker force-deletes the pods of outageBurst running steps while the function's
// API server is unreachable for outageTime, and checks that in the end every workflow left
// Running and nothing was dead-lettered: the channel's retries carry the events over the outage,
// the ingress holding the adapter's request meanwhile. The figures say how long the events queued.
func outageThroughBroker(ctx context.Context, t *testing.T, c *localcluster.Cluster, e *scenario.Env, proxy *apitap.Proxy, b *localcluster.Broker, toFn *cesink.Sink) {
	const outageBurst, outageTime = 10, 30 * time.Second
	startAdapterRaw(t, c, b.IngressURL, []string{nsWith}, workflowPods)
	type step struct {
		workflow string
		pod      *corev1.Pod
	}
	steps := make([]step, outageBurst)
	var wg sync.WaitGroup
	errs := make([]error, outageBurst)
	for i := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wf, pod, _, err := e.RunningStep(ctx, "outage-", scenario.Spec{Namespace: nsWith, Node: localcluster.NodeName(0)})
			if err == nil {
				steps[i] = step{wf.Name, pod}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// A pod gone within 10 s of its start is created again by the controller.
	time.Sleep(11 * time.Second)
	proxy.Arm(apitap.FaultReset, 1)
	t0 := time.Now()
	for _, s := range steps {
		if _, err := e.Delete(ctx, s.pod, scenario.Force); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(t0.Add(outageTime)))
	proxy.Disarm()
	t.Logf("broker figure: API server unreachable for the function for %.1f s from the %d deletions", time.Since(t0).Seconds(), outageBurst)
	// On this controller a workflow whose pod was deleted leaves Running only once repaired (the
	// controller then deletes its task results, so the workflow is what to look at).
	completed := func(s step) bool {
		wf, err := e.Argo.ArgoprojV1alpha1().Workflows(nsWith).Get(ctx, s.workflow, metav1.GetOptions{})
		return err == nil && wf.Status.Phase != "" && wf.Status.Phase != wfv1.WorkflowRunning
	}
	err := waitFor(ctx, 3*time.Minute, func() bool {
		for _, s := range steps {
			if !completed(s) {
				return false
			}
		}
		return true
	})
	done := time.Since(t0)
	var firstSeen []time.Duration
	attempts, failed, answered503, deadLettered := 0, 0, 0, 0
	for _, s := range steps {
		prefix := cesink.PodSubject(nsWith, s.pod.Name)
		var first time.Time
		for _, d := range toFn.Received() {
			if d.Header.Get("Ce-Type") != podDeleteType || d.Header.Get("Ce-Subject") != prefix || d.At.Before(t0) {
				continue
			}
			if d.Header.Get("Ce-Knativeerrorcode") != "" {
				deadLettered++
				continue
			}
			attempts++
			if d.Status >= 500 {
				failed++
			}
			if d.Status == http.StatusServiceUnavailable {
				answered503++
			}
			if first.IsZero() {
				first = d.At
			}
		}
		if !first.IsZero() {
			firstSeen = append(firstSeen, first.Sub(t0))
		}
	}
	slices.Sort(firstSeen)
	t.Logf("broker figure: outage of %s during %d deletions: %d delivery attempts of their delete events (%d answered 5xx, %d of them 503), %d dead letters; first attempts %v after the deletions; every workflow left Running %.1f s after them",
		outageTime, outageBurst, attempts, failed, answered503, deadLettered, firstSeen, done.Seconds())
	if err != nil {
		for _, s := range steps {
			if !completed(s) {
				t.Errorf("workflow %s/%s still Running %s after its pod was deleted during the outage", nsWith, s.workflow, done.Round(time.Second))
			}
		}
	}
	if deadLettered != 0 {
		t.Errorf("%d delete events dead-lettered: the shipped retries did not carry them over a %s outage", deadLettered, outageTime)
	}
	if failed == 0 {
		t.Errorf("no delete event was answered 5xx during the outage: the outage was not exercised")
	}
}

// podDeletionThroughBroker runs scenario a (a retried step whose pod is force-deleted) with the
// adapter's sink on the broker ingress, and checks that the function got the pod's delete event
// from the filter.
func podDeletionThroughBroker(ctx context.Context, t *testing.T, c *localcluster.Cluster, e *scenario.Env, fn *scenario.Function, b *localcluster.Broker, toFn *cesink.Sink) {
	startAdapterRaw(t, c, b.IngressURL, []string{nsWith}, workflowPods)
	r := e.PodDeletion(ctx, "a", scenario.With, scenario.Spec{Namespace: nsWith, Node: localcluster.NodeName(0), Retry: true}, scenario.Force, fn)
	for _, l := range r.Timeline {
		t.Log(l)
	}
	check(t, r)
	if r.Err != nil {
		return
	}
	t.Logf("broker figure: pod deleted → repair written %.2f s, workflow left Running %.2f s (%s)", r.Repair.Seconds(), r.Moved.Seconds(), r.Outcome)
	prefix := cesink.PodSubject(nsWith, r.Workflow)
	var got *cesink.Request
	for _, d := range toFn.Received() {
		if d.Header.Get("Ce-Type") == podDeleteType && strings.HasPrefix(d.Header.Get("Ce-Subject"), prefix) && d.Header.Get("Ce-Knativeerrorcode") == "" {
			got = &d
			break
		}
	}
	if got == nil {
		t.Fatalf("the function received no %s event for a pod of %s through the broker", podDeleteType, r.Workflow)
	}
	if ns := got.Header.Get("Kn-Namespace"); ns != b.Namespace {
		t.Errorf("delete event: Kn-Namespace %q, want %q (set by the filter)", ns, b.Namespace)
	}
	arrived, err := time.Parse(time.RFC3339Nano, got.Header.Get("Ce-Knativearrivaltime"))
	if err != nil {
		t.Errorf("delete event: ce-knativearrivaltime %q (set by the ingress): %v", got.Header.Get("Ce-Knativearrivaltime"), err)
	} else {
		t.Logf("broker figure: pod deleted → event at the ingress %.3f s, ingress → function %.3f s", arrived.Sub(r.T0).Seconds(), got.At.Sub(arrived).Seconds())
	}
	if got.Status != http.StatusOK {
		t.Errorf("the function answered the delete event %d (%s)", got.Status, got.Answer)
	}
}

// deadLetters sends the two kinds of failing events to the ingress and checks the attempts and
// the dead letters; source is the one the adapter gives its events (the API server's URL).
func deadLetters(t *testing.T, fn *scenario.Function, b *localcluster.Broker, broker *unstructured.Unstructured, toFn, failing *cesink.Sink, source string) {
	delivery, _, _ := unstructured.NestedMap(broker.Object, "spec", "delivery")
	retry, _, _ := unstructured.NestedInt64(delivery, "retry")
	backoff := backoffSchedule(t, delivery)

	// A source the function does not allow: 403, not retried, dead-lettered at once.
	stranger := jsonEvent(t, "stranger", "https://stranger.example/", podDeleteType,
		[]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","namespace":"`+nsWith+`","labels":{"`+argoworkflow.LabelWorkflow+`":"y"}}}`))
	stranger.SetExtension("kind", "Pod")
	code, held := postIngress(t, b.IngressURL, stranger)
	t.Logf("broker figure: ingress POST held %.3f s for a 403 (answered %d)", held.Seconds(), code)
	attempts := byID(toFn, stranger.ID(), false)
	if len(attempts) != 1 || attempts[0].Status != http.StatusForbidden {
		t.Errorf("event from a stranger: %d deliveries to the function %v, want one answered 403", len(attempts), statuses(attempts))
	}
	checkDeadLetter(t, fn, toFn, stranger.ID(), http.StatusForbidden, toFn.URL, "not allowed")
	if code != http.StatusAccepted {
		t.Errorf("ingress answered %d for the stranger's event, want 202 (its dead letter was accepted)", code)
	}

	// A subscriber that always answers 500: retried with the Broker's backoff, then dead-lettered.
	doomed := jsonEvent(t, "doomed", source, failingType, []byte(`{}`))
	code, held = postIngress(t, b.IngressURL, doomed)
	attempts = byID(failing, doomed.ID(), false)
	t.Logf("broker figure: ingress POST held %.3f s for a permanent 500 (%d attempts, answered %d)", held.Seconds(), len(attempts), code)
	if int64(len(attempts)) != 1+retry {
		t.Errorf("subscriber answering 500: %d attempts, want 1 + retry %d", len(attempts), retry)
	}
	checkBackoff(t, attempts, backoff)
	checkDeadLetter(t, fn, toFn, doomed.ID(), http.StatusInternalServerError, failing.URL, failingAnswer)
	if code != http.StatusAccepted {
		t.Errorf("ingress answered %d for the doomed event, want 202 (its dead letter was accepted)", code)
	}
	if len(attempts) > 0 && held < attempts[len(attempts)-1].At.Sub(attempts[0].At) {
		t.Errorf("ingress POST held %v, shorter than the retries (%v): the channel is not synchronous", held, attempts[len(attempts)-1].At.Sub(attempts[0].At))
	}
}

// checkDeadLetter asserts that the event with id reached the function as a dead letter with the
// code, the failed destination and the destination's answer, that the function accepted it and
// logged it.
func checkDeadLetter(t *testing.T, fn *scenario.Function, toFn *cesink.Sink, id string, code int, dest, answer string) {
	t.Helper()
	dls := byID(toFn, id, true)
	if len(dls) != 1 {
		t.Errorf("event %s: %d dead letters, want 1", id, len(dls))
		return
	}
	h := dls[0].Header
	if got := h.Get("Ce-Knativeerrorcode"); got != strconv.Itoa(code) {
		t.Errorf("dead letter %s: knativeerrorcode %q, want %d", id, got, code)
	}
	if got := h.Get("Ce-Knativeerrordest"); strings.TrimSuffix(got, "/") != strings.TrimSuffix(dest, "/") {
		t.Errorf("dead letter %s: knativeerrordest %q, want the subscriber %q", id, got, dest)
	}
	data, err := base64.StdEncoding.DecodeString(h.Get("Ce-Knativeerrordata"))
	if err != nil || !strings.Contains(string(data), answer) {
		t.Errorf("dead letter %s: knativeerrordata %q (%v), want the subscriber's answer containing %q", id, data, err, answer)
	}
	if dls[0].Status != http.StatusOK {
		t.Errorf("dead letter %s: the function answered %d (%s), want 200", id, dls[0].Status, dls[0].Answer)
	}
	if !fn.LogContains("dead letter", id, fmt.Sprintf(`"code":"%d"`, code)) {
		t.Errorf("dead letter %s with code %d not in the function's log %s", id, code, fn.LogPath)
	}
	t.Logf("broker: dead letter %s: knativeerrorcode %s, knativeerrordest %s, knativeerrordata %q", id, h.Get("Ce-Knativeerrorcode"), h.Get("Ce-Knativeerrordest"), data)
}

// backoffSchedule is the wait before each retry that delivery asks for.
func backoffSchedule(t *testing.T, delivery map[string]any) []time.Duration {
	t.Helper()
	retry, _, _ := unstructured.NestedInt64(delivery, "retry")
	policy, _, _ := unstructured.NestedString(delivery, "backoffPolicy")
	delayText, _, _ := unstructured.NestedString(delivery, "backoffDelay")
	delay, err := isoSeconds(delayText)
	if err != nil {
		t.Fatalf("Broker backoffDelay: %v", err)
	}
	out := make([]time.Duration, retry)
	for i := range out {
		if policy == "linear" {
			out[i] = delay * time.Duration(i)
		} else {
			out[i] = delay * time.Duration(math.Pow(2, float64(i)))
		}
	}
	return out
}

// checkBackoff compares the gaps between attempts with the schedule (each at least 90 % of the
// wait asked for, at most that plus a second).
func checkBackoff(t *testing.T, attempts []cesink.Request, backoff []time.Duration) {
	t.Helper()
	var gaps []string
	for i := 1; i < len(attempts) && i-1 < len(backoff); i++ {
		gap, want := attempts[i].At.Sub(attempts[i-1].At), backoff[i-1]
		gaps = append(gaps, fmt.Sprintf("%.2f", gap.Seconds()))
		if gap < want*9/10 || gap > want+time.Second {
			t.Errorf("retry %d came %v after the previous attempt, want about %v", i, gap, want)
		}
	}
	t.Logf("broker figure: gaps between attempts (s) %s; asked for %v", strings.Join(gaps, " "), backoff)
}

// isoSeconds reads an ISO-8601 duration of the form PT<seconds>S.
func isoSeconds(s string) (time.Duration, error) {
	n, prefixed := strings.CutPrefix(s, "PT")
	n, suffixed := strings.CutSuffix(n, "S")
	if !prefixed || !suffixed {
		return 0, fmt.Errorf("%q is not PT<seconds>S", s)
	}
	f, err := strconv.ParseFloat(n, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// shippedBroker reads the Broker and the Triggers of the chart, as helm renders them.
func shippedBroker(t *testing.T) (*unstructured.Unstructured, []*unstructured.Unstructured) {
	t.Helper()
	broker, triggers, err := manifests.Broker()
	if err != nil {
		t.Fatal(err)
	}
	return broker, triggers
}

// failingTrigger routes failingType to the stand-in subscriber, with no delivery of its own: the
// Broker's applies, as to the shipped Triggers.
func failingTrigger(broker *unstructured.Unstructured) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "eventing.knative.dev/v1",
		"kind":       "Trigger",
		"metadata":   map[string]any{"name": failingService, "namespace": broker.GetNamespace()},
		"spec": map[string]any{
			"broker":     broker.GetName(),
			"filter":     map[string]any{"attributes": map[string]any{"type": failingType}},
			"subscriber": map[string]any{"ref": map[string]any{"apiVersion": "v1", "kind": "Service", "name": failingService}},
		},
	}}
}

// ingressClient waits out a channel that holds the POST during every retry.
var ingressClient = &http.Client{Timeout: 5 * time.Minute}

// postIngress posts e to the broker ingress in binary mode, as the adapter does, and returns the
// answer's status and how long the POST was held.
func postIngress(t *testing.T, url string, e event.Event) (int, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&e), req); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := ingressClient.Do(req)
	if err != nil {
		t.Fatalf("posting %s to the ingress: %v", e.ID(), err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// byID returns the requests s kept that carry the event id: the dead letters (knativeerrorcode
// set) or the deliveries.
func byID(s *cesink.Sink, id string, deadLetters bool) []cesink.Request {
	var out []cesink.Request
	for _, d := range s.Received() {
		if d.Header.Get("Ce-Id") == id && (d.Header.Get("Ce-Knativeerrorcode") != "") == deadLetters {
			out = append(out, d)
		}
	}
	return out
}

func statuses(ds []cesink.Request) []int {
	out := make([]int, len(ds))
	for i, d := range ds {
		out[i] = d.Status
	}
	return out
}
