//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"function/internal/localcluster"
	"function/internal/localcluster/scenario"
)

// TestDoNoHarm sends the function, on the real control plane (Argo ADH_E2E_HARM_ARGO, default
// v3.7.18, status finalizer on), the events a late re-delivery, an earlier incarnation or a forger
// would send about a workflow step that is running on a live, Karpenter-labelled Node:
//   - a Karpenter Node delete naming that live Node (an earlier Node of the same name);
//   - a NodeClaim delete whose status.nodeName is that live Node;
//   - a pod delete for a pod name that never existed, carrying the running node's node-id and the
//     workflow's UID;
//   - a pod delete for the running pod's own name with another pod UID (an earlier incarnation);
//   - pod deletes for names the node's pod does not have: the node ID (Argo's v1 name, while the
//     workflow names its pods v2) with and without the real owner, another template's name with
//     the node's hash, all dated three days ago, and the node ID in a Reference-mode delete.
//
// Each is answered 200, and afterwards the running step's pod (same UID, not deleting, its
// finalizer kept), its task result ("false"), its node (Running) and its workflow (Running) are
// untouched, and no record annotation or PodDisrupted Event appears.
func TestDoNoHarm(t *testing.T) {
	version := env("ADH_E2E_HARM_ARGO", "v3.7.18")
	ctx := context.Background()
	bin, c, e := functionStack(ctx, t, localcluster.Options{ArgoVersion: version, Nodes: 1,
		ArgoEnv: map[string]string{"ARGO_POD_STATUS_CAPTURE_FINALIZER": "true"}}, 150*time.Second)
	if err := e.EnsureNamespace(ctx, nsWith); err != nil {
		t.Fatal(err)
	}
	fn := runFunction(ctx, t, bin, c, map[string]string{"ADH_NAMESPACES": nsWith})
	node := localcluster.NodeName(0)
	if _, err := e.Kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"karpenter.sh/nodepool":"workflows","karpenter.sh/registered":"true"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// A step under a retry node: its pod node is not the workflow's root, so its ID
	// ("<wf>-<hash>") and its pod's v2 name ("<wf>-main-<hash>") differ, as for every step of a
	// real workflow (a one-container workflow's root node has its pod named like the node).
	wf, pod, nodeID, err := e.RunningStep(ctx, "harm-", scenario.Spec{Namespace: nsWith, Node: node, Retry: true})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(11 * time.Second) // past the controller's own 10 s, as a real disruption would be
	if nodeID == pod.Name {
		t.Fatalf("node %s is named like its pod: the names the node does not have are not exercised", nodeID)
	}

	liveNode, err := e.Kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	livePod, err := e.Kube.CoreV1().Pods(nsWith).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ghost := livePod.DeepCopy()
	ghost.Name, ghost.UID = wf.Name+"-ghost-1571963540", "0000-ghost"
	earlier := livePod.DeepCopy()
	earlier.UID = "0000-earlier-incarnation"
	claim := map[string]any{"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
		"metadata": map[string]any{"name": "workflows-x7k2p", "labels": map[string]any{"karpenter.sh/nodepool": "workflows"}},
		"status":   map[string]any{"nodeName": node, "providerID": "kwok://" + node}}
	// Names the node's pod does not have: the node ID itself (Argo's v1 name; the workflow names
	// its pods v2) and another template's name with the node's hash, dated three days ago, with
	// and without the real pod's owner; and the node ID by reference.
	hash := nodeID[strings.LastIndexByte(nodeID, '-'):]
	threeDaysAgo := metav1.NewTime(time.Now().Add(-72 * time.Hour))
	misnamed := func(name string, owned bool) *corev1.Pod {
		p := livePod.DeepCopy()
		p.Name, p.UID, p.DeletionTimestamp = name, types.UID("0000-"+name), &threeDaysAgo
		if !owned {
			p.OwnerReferences = nil
		}
		return p
	}
	probes := []struct {
		name, ceType, kind string
		data               any
	}{
		{"Karpenter Node delete naming a live Node", "dev.knative.apiserver.resource.delete", "Node", liveNode},
		{"NodeClaim delete whose Node is live", "dev.knative.apiserver.resource.delete", "NodeClaim", claim},
		{"delete of a pod that never existed, with the running node's node-id", "dev.knative.apiserver.resource.delete", "Pod", ghost},
		{"late delete of an earlier incarnation of the running pod's name", "dev.knative.apiserver.resource.delete", "Pod", earlier},
		{"delete of a pod named the node ID, the real owner, dated long ago", "dev.knative.apiserver.resource.delete", "Pod", misnamed(nodeID, true)},
		{"delete of a pod named the node ID, no owner", "dev.knative.apiserver.resource.delete", "Pod", misnamed(nodeID, false)},
		{"delete of another template's pod name with the node's hash", "dev.knative.apiserver.resource.delete", "Pod", misnamed(wf.Name+"-other"+hash, true)},
		{"reference delete naming the node ID", "dev.knative.apiserver.ref.delete", "Pod", map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": nsWith, "name": nodeID}},
	}
	for _, p := range probes {
		if status := postEvent(t, fn.URL, p.ceType, p.kind, p.data); status != http.StatusOK {
			t.Errorf("%s: answered %d, want 200", p.name, status)
		}
		t.Logf("%s: sent", p.name)
	}
	time.Sleep(3 * time.Second) // the controller's reconciles and any write would have landed

	cur, err := e.Kube.CoreV1().Pods(nsWith).Get(ctx, pod.Name, metav1.GetOptions{})
	switch {
	case err != nil:
		t.Errorf("running pod %s: %v (deleted by a forged or late event)", pod.Name, err)
	case cur.UID != pod.UID || cur.DeletionTimestamp != nil:
		t.Errorf("running pod %s: uid %s (was %s), deletionTimestamp %v", pod.Name, cur.UID, pod.UID, cur.DeletionTimestamp)
	case len(cur.Finalizers) != len(livePod.Finalizers):
		t.Errorf("running pod %s finalizers %v, were %v", pod.Name, cur.Finalizers, livePod.Finalizers)
	}
	w := noRepairWritten(ctx, t, e, nsWith, wf.Name, nodeID, "a running step")
	if n := w.Status.Nodes[nodeID]; w.Status.Phase != "Running" || n.Phase != "Running" {
		t.Errorf("workflow %s %s, node %s %s %q: want both Running", wf.Name, w.Status.Phase, nodeID, n.Phase, n.Message)
	}
	if !t.Failed() {
		t.Logf("Argo %s: %d late/forged events about a running step on a live Node → pod, task result, node, workflow untouched, no record, no Event", version, len(probes))
	}
}

// postEvent posts one binary-mode CloudEvent of an ApiServerSource as the broker delivers it,
// and returns the HTTP status.
func postEvent(t *testing.T, url, ceType, kind string, data any) int {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	e := jsonEvent(t, "harm", apiServerSource, ceType, withKind(t, b, kind))
	e.SetExtension("kind", kind)
	code, _ := post(t, url, e, nil)
	return code
}

// withKind sets "kind" (and "apiVersion" for core kinds) in an object's JSON, as the
// ApiServerSource's Resource mode sends it: typed objects read through client-go carry neither.
func withKind(t *testing.T, b []byte, kind string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["kind"] = kind
	if _, ok := m["apiVersion"]; !ok || m["apiVersion"] == "" {
		m["apiVersion"] = corev1.SchemeGroupVersion.String()
	}
	out, _ := json.Marshal(m)
	return out
}
