//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"function/internal/localcluster"
	"function/internal/localcluster/cesink"
	"function/internal/localcluster/scenario"
	"function/internal/repair"
)

// TestKarpenter lets the real Karpenter (its KWOK provider, v1.15.0) take nodes away from running
// workflow steps, on Argo ADH_E2E_KARPENTER_ARGO (default v3.5.10, where a workflow never heals by
// itself), the function fed by the real ApiServerSource adapter with what a cluster has: workflow
// pods, Events, Nodes and NodeClaims. Four paths:
//  1. drift: the NodePool's template changes; Karpenter launches a replacement, taints the old
//     node and evicts its pods ("Evicted pod: Drifted");
//  2. a NodeClaim deleted (kubectl delete nodeclaim): the forceful path, no disruption command;
//  3. node repair: a node-problem condition; Karpenter replaces the node (reason Unhealthy);
//  4. node reboot: a condition the provider reboots for; the pods ride the reboot and fail.
//
// In each, one workflow runs in a namespace the function serves and one in a namespace it does
// not: the first must leave Running with Karpenter's reason recorded, the second stay Running.
// On the drift path Karpenter's DisruptionTerminating Event on the Node precedes the eviction; on
// the forceful path its Evicted Event follows the eviction and reaches the function while the pod
// is still stopping (docs/dev/karpenter-local.md).
// Karpenter's Events as the adapter delivered them are written to ADH_E2E_CAPTURE (a directory)
// when it is set, to refresh the decoders' fixtures.
func TestKarpenter(t *testing.T) {
	version := env("ADH_E2E_KARPENTER_ARGO", "v3.5.10")
	ctx := context.Background()
	bin, c, e := functionStack(ctx, t, localcluster.Options{ArgoVersion: version, Karpenter: true}, 150*time.Second)
	for _, ns := range []string{nsWith, nsWithout} {
		if err := e.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	fn := runFunction(ctx, t, bin, c, map[string]string{"ADH_NAMESPACES": nsWith})
	tap := startSink(t)(cesink.Forward(fn.URL))
	startAdapter(t, c, tap.URL, []string{nsWith, nsWithout, "default"}, workflowPods,
		localcluster.AdapterResource{Version: "v1", Resource: "events"},
		localcluster.AdapterResource{Version: "v1", Resource: "nodes"},
		localcluster.AdapterResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"})
	t.Cleanup(func() { logKarpenterEvents(t, tap) })

	nodesOf := func(pods []*corev1.Pod) []string {
		var nodes []string
		for _, p := range pods {
			if !slices.Contains(nodes, p.Spec.NodeName) {
				nodes = append(nodes, p.Spec.NodeName)
			}
		}
		return nodes
	}
	cases := []struct {
		name string
		// sameNode runs the second workflow's pod on the first one's node: node repair stops
		// when more than 20 % of a NodePool's nodes are unhealthy, so one node is made so.
		sameNode bool
		// doNotDisrupt keeps the pods out of Karpenter's drain (karpenter.sh/do-not-disrupt).
		doNotDisrupt bool
		// disrupt takes the nodes of the pods away as Karpenter is told to.
		disrupt func(pods []*corev1.Pod) error
		// reason is what the record must say: Karpenter's, from its Event on the Node before the
		// eviction (drift); on the forceful path Karpenter names its reason only on the pod, in
		// the workflow's namespace, whose Events the shipped source leaves out
		// (docs/scale-to-zero.md): the record names the eviction Kubernetes reports.
		reason string
	}{
		{"drift", false, false, func([]*corev1.Pod) error { return c.DriftNodePool(ctx, "2") }, "Drifted"},
		{"nodeclaim-delete", false, false, func(pods []*corev1.Pod) error {
			done := map[string]bool{}
			for _, p := range pods {
				claim, err := c.NodeClaimOf(ctx, p.Spec.NodeName)
				if err != nil {
					return err
				}
				if !done[claim] {
					if err := c.DeleteNodeClaim(ctx, claim); err != nil {
						return err
					}
					done[claim] = true
				}
			}
			return nil
		}, "EvictionByEvictionAPI"},
		// Node repair (Karpenter v1.15): a node-problem condition the KWOK provider replaces the
		// node for; Karpenter drains it with reason Unhealthy ("Disrupting Node: Unhealthy").
		{"unhealthy", true, false, func(pods []*corev1.Pod) error {
			for _, n := range nodesOf(pods) {
				if err := c.SetNodeCondition(ctx, n, localcluster.ConditionUnhealthy); err != nil {
					return err
				}
			}
			return nil
		}, "Unhealthy"},
		// Node reboot (Karpenter v1.15): pods that stay through the drain (do-not-disrupt) ride
		// the reboot. The KWOK provider only changes the Node's boot ID; a kubelet coming back
		// finds the pod's containers gone and reports them ContainerStatusUnknown (exit 137),
		// the pod Failed, which the test does for it. Karpenter says RebootObserved on the
		// NodeClaim; nothing deletes the pod but Argo's own pod GC.
		{"reboot", true, true, func(pods []*corev1.Pod) error {
			nodes := nodesOf(pods)
			boots := map[string]string{}
			for _, n := range nodes {
				id, err := c.NodeBootID(ctx, n)
				if err != nil {
					return err
				}
				boots[n] = id
				if err := c.SetNodeCondition(ctx, n, localcluster.ConditionRebootRequired); err != nil {
					return err
				}
			}
			asked := time.Now()
			for _, n := range nodes {
				if err := waitFor(ctx, rebootWait, func() bool {
					id, err := c.NodeBootID(ctx, n)
					return err == nil && id != boots[n]
				}); err != nil {
					return fmt.Errorf("node %s not rebooted within %s of its %s condition", n, rebootWait, localcluster.ConditionRebootRequired)
				}
				t.Logf("reboot: node %s rebooted (new boot ID) %s after its %s condition", n, since(asked), localcluster.ConditionRebootRequired)
				// Cleared once the reboot is issued, as a detector would: left set, the
				// provider would reboot the node again when its toleration passes.
				if err := c.ClearNodeCondition(ctx, n, localcluster.ConditionRebootRequired); err != nil {
					return err
				}
			}
			for _, p := range pods {
				patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"lost"}}}`, localcluster.CompleteAnnotation)
				if _, err := e.Kube.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
					return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
				}
			}
			return nil
		}, "RebootObserved"},
	}
	var report []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "unhealthy" && os.Getenv("ADH_E2E_FULL") != "1" {
				// The path of drift (DisruptionTerminating, then the eviction) with another
				// reason: run with the full matrix only, to keep the test command's time.
				t.Skip("ADH_E2E_FULL=1 runs it")
			}
			spec := scenario.Spec{Namespace: nsWith, NodePool: localcluster.KarpenterNodePool, TerminateDelay: stopTime, DoNotDisrupt: tc.doNotDisrupt}
			with := karpenterStep(ctx, t, e, "karp-"+tc.name+"-", spec)
			spec.Namespace = nsWithout
			if tc.sameNode {
				spec.NodePool, spec.Node = "", with.pod.Spec.NodeName
			}
			without := karpenterStep(ctx, t, e, "karp-"+tc.name+"-", spec)
			t.Logf("%s: pods %s and %s on Karpenter nodes %s and %s", tc.name, with.pod.Name, without.pod.Name, with.pod.Spec.NodeName, without.pod.Spec.NodeName)
			// A pod gone within 10 s of its start is created again by the controller (it takes the
			// absence for informer lag), and a node is not a drift candidate while nominated for
			// the pods it was launched for: the steps run a little first, as real ones do.
			time.Sleep(12 * time.Second)
			evicted := make(chan time.Time, 2)
			within := evictWait + 15*time.Second
			if tc.doNotDisrupt {
				within += rebootWait
			}
			for _, s := range []*karpenterRun{with, without} {
				go func() { evicted <- s.waitEvicted(ctx, e, within) }()
			}
			if err := tc.disrupt([]*corev1.Pod{with.pod, without.pod}); err != nil {
				t.Fatal(err)
			}
			disrupted := time.Now()
			var first time.Time
			for range 2 {
				if at := <-evicted; !at.IsZero() && (first.IsZero() || at.Before(first)) {
					first = at
				}
			}
			if first.IsZero() {
				t.Fatalf("Karpenter took neither pod within %s of the %s", within, tc.name)
			}
			// For the reboot, "evicted" is the pods' end as the kubelet reports it: Karpenter
			// leaves them in place.
			left, rec := with.waitLeftRunning(ctx, t, e)
			report = append(report, fmt.Sprintf("%s: Karpenter evicted %s after the trigger; workflow %s left Running %s after the eviction (%s), record %q: %q",
				tc.name, first.Sub(disrupted).Round(100*time.Millisecond), with.wf.Name, left.Sub(first).Round(100*time.Millisecond), with.phase, rec.Reason, rec.Message))
			if !strings.Contains(rec.Reason+" "+rec.Message, tc.reason) {
				t.Errorf("record on %s = %q %q, want Karpenter's reason %q in it", with.wf.Name, rec.Reason, rec.Message, tc.reason)
			}
			// The workflow the function does not serve: still Running a minute after the eviction.
			if wait := time.Until(first.Add(time.Minute)); wait > 0 {
				time.Sleep(wait)
			}
			w := noRepairWritten(ctx, t, e, nsWithout, without.wf.Name, without.nodeID, "workflow "+without.wf.Name+" in a namespace the function does not serve")
			if w.Status.Phase != wfv1.WorkflowRunning {
				t.Errorf("workflow %s without the function is %s a minute after the eviction, want still Running (Argo %s never heals it): the scenario does not show the hang", w.Name, w.Status.Phase, version)
			}
			report = append(report, fmt.Sprintf("%s: without the function workflow %s is %s a minute after the eviction", tc.name, w.Name, w.Status.Phase))
		})
	}
	t.Logf("Karpenter scenarios on Argo %s:\n  %s", version, strings.Join(report, "\n  "))
}

// evictWait bounds the wait for Karpenter's eviction after the trigger (drift: its 10 s
// disruption poll, the replacement's launch and initialisation, then the drain).
const evictWait = 90 * time.Second

// stopTime is how long an evicted step takes to stop, as a kubelet stopping its containers would
// (kwok alone stops them at once, which no kubelet does).
const stopTime = 3 * time.Second

// karpenterRun is one workflow step running on a Karpenter node.
type karpenterRun struct {
	wf     *wfv1.Workflow
	pod    *corev1.Pod
	nodeID string
	phase  wfv1.WorkflowPhase
}

// rebootWait bounds the wait for a node's reboot after its condition: the provider's next
// disruption pass, then the drain deadline of its reboot policy (1 min) for the pods that stay.
const rebootWait = 150 * time.Second

// karpenterStep submits a one-step workflow whose pod the scheduler places on the NodePool's nodes
// (Karpenter launching one) or on spec's Node, and gates it as the wait container does.
func karpenterStep(ctx context.Context, t *testing.T, e *scenario.Env, generateName string, spec scenario.Spec) *karpenterRun {
	t.Helper()
	wf, pod, nodeID, err := e.RunningStep(ctx, generateName, spec)
	if err != nil {
		t.Fatal(err)
	}
	return &karpenterRun{wf: wf, pod: pod, nodeID: nodeID}
}

// waitEvicted returns when the pod got its deletionTimestamp, ended or vanished; zero after
// within.
func (r *karpenterRun) waitEvicted(ctx context.Context, e *scenario.Env, within time.Duration) time.Time {
	var at time.Time
	_ = waitFor(ctx, within, func() bool {
		p, err := e.Kube.CoreV1().Pods(r.pod.Namespace).Get(ctx, r.pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && (p.UID != r.pod.UID || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed)) {
			at = time.Now()
			return true
		}
		return false
	})
	return at
}

// waitLeftRunning waits for the workflow to leave Running and returns when it did and the record
// the function wrote.
func (r *karpenterRun) waitLeftRunning(ctx context.Context, t *testing.T, e *scenario.Env) (time.Time, repair.Record) {
	t.Helper()
	var rec repair.Record
	if err := waitFor(ctx, 60*time.Second, func() bool {
		w, err := e.Argo.ArgoprojV1alpha1().Workflows(r.wf.Namespace).Get(ctx, r.wf.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		rec = repair.Recorded(w)[r.nodeID]
		r.phase = w.Status.Phase
		return w.Status.Phase != wfv1.WorkflowRunning && w.Status.Phase != ""
	}); err != nil {
		t.Fatalf("workflow %s/%s still %s 60 s after Karpenter's eviction (record %+v)", r.wf.Namespace, r.wf.Name, r.phase, rec)
	}
	return time.Now(), rec
}

// logKarpenterEvents logs the Events Karpenter emitted, as the adapter delivered them, and writes
// them to ADH_E2E_CAPTURE when set.
func logKarpenterEvents(t *testing.T, tap *cesink.Sink) {
	dir := os.Getenv("ADH_E2E_CAPTURE")
	n := 0
	received := tap.Received()
	for _, r := range received {
		if kind, _ := r.Event.Extensions()["kind"].(string); kind != "Event" {
			continue
		}
		var ev corev1.Event
		if err := json.Unmarshal(r.Event.Data(), &ev); err != nil || ev.Source.Component != "karpenter" {
			continue
		}
		n++
		t.Logf("karpenter event %s %s/%s %s: %s (%s)", r.Event.Type(), ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Reason, ev.Message, r.At.Format(time.RFC3339Nano))
		if dir == "" {
			continue
		}
		b, err := json.MarshalIndent(r.Event, "", "  ")
		if err == nil {
			name := fmt.Sprintf("%03d-%s-%s-%s.json", n, strings.ToLower(ev.InvolvedObject.Kind), ev.Reason, strings.TrimPrefix(r.Event.Type(), "dev.knative.apiserver.resource."))
			err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
		if err != nil {
			t.Logf("capturing %s: %v", r.Event.ID(), err)
		}
	}
	t.Logf("%d Karpenter Events delivered (of %d events)", n, len(received))
}
