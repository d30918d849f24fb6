package localcluster

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

//go:embed crds/karpenter.sh_nodeclaims.yaml
var nodeClaimCRD []byte

var nodeClaimGVR = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}

// InstallNodeClaimCRD installs Karpenter's own NodeClaim CRD (v1.15.0: its schema, its status
// subresource and the columns the API server prints), for the lookups that read NodeClaims.
func (c *Cluster) InstallNodeClaimCRD(ctx context.Context) error {
	return c.createCRDs(ctx, [][]byte{nodeClaimCRD})
}

// CreateNodeClaim creates a NodeClaim as Karpenter leaves it once its machine registered: the
// provider ID and the Node name in its status.
func (c *Cluster) CreateNodeClaim(ctx context.Context, name, providerID, nodeName string) error {
	claim := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
		"metadata": map[string]any{"name": name, "labels": map[string]any{"karpenter.sh/nodepool": "workflows"}},
		"spec": map[string]any{
			"nodeClassRef": map[string]any{"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
			"requirements": []any{map[string]any{"key": "karpenter.sh/capacity-type", "operator": "In", "values": []any{"spot"}}},
		}}}
	created, err := c.dyn.Resource(nodeClaimGVR).Create(ctx, claim, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating nodeclaim %s: %w", name, err)
	}
	created.Object["status"] = map[string]any{"providerID": providerID, "nodeName": nodeName}
	if _, err := c.dyn.Resource(nodeClaimGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the status of nodeclaim %s: %w", name, err)
	}
	return nil
}

// AdoptNode makes a Node Karpenter's as its registration does: Karpenter's labels on the Node, a
// NodeClaim naming it (with Karpenter's termination finalizer, so that deleting it leaves it
// terminating) as the Node's owner. It installs the NodeClaim CRD if needed.
func (c *Cluster) AdoptNode(ctx context.Context, claim, node string) error {
	if err := c.InstallNodeClaimCRD(ctx); err != nil {
		return err
	}
	if err := c.CreateNodeClaim(ctx, claim, "kwok://"+node, node); err != nil {
		return err
	}
	fin := []byte(`{"metadata":{"finalizers":["karpenter.sh/termination"]}}`)
	created, err := c.dyn.Resource(nodeClaimGVR).Patch(ctx, claim, types.MergePatchType, fin, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("adding the termination finalizer to nodeclaim %s: %w", claim, err)
	}
	owner, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels": map[string]string{"karpenter.sh/nodepool": KarpenterNodePool, "karpenter.sh/registered": "true"},
		"ownerReferences": []map[string]any{{"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "name": claim,
			"uid": string(created.GetUID()), "blockOwnerDeletion": true}}}})
	if _, err := c.kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, owner, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("making nodeclaim %s the owner of node %s: %w", claim, node, err)
	}
	return nil
}

// ReleaseNodeClaim removes Karpenter's termination finalizer from a NodeClaim, as Karpenter does
// once the instance is gone (tests clean up with it).
func (c *Cluster) ReleaseNodeClaim(ctx context.Context, claim string) error {
	_, err := c.dyn.Resource(nodeClaimGVR).Patch(ctx, claim, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing nodeclaim %s: %w", claim, err)
	}
	return nil
}

// KarpenterVersion is the sigs.k8s.io/karpenter release whose KWOK provider runs the nodes of
// Options.Karpenter.
const KarpenterVersion = "v1.15.0"

// KarpenterNodePool is the NodePool the stack creates for Options.Karpenter; a workflow selects
// it with nodeSelector karpenter.sh/nodepool.
const KarpenterNodePool = "workflows"

// RevisionLabel is the NodePool template label DriftNodePool changes: a change of the template is
// what Karpenter calls drift.
const RevisionLabel = "adh.local/revision"

var (
	nodePoolGVR  = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}
	nodeClassGVR = schema.GroupVersionResource{Group: "karpenter.kwok.sh", Version: "v1alpha1", Resource: "kwoknodeclasses"}
)

// karpenterObjects are the KWOKNodeClass and the NodePool: small on-demand machines in one zone,
// every node disruptable at once, no consolidation (so only what a test triggers disrupts).
func karpenterObjects() []*unstructured.Unstructured {
	class := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass",
		"metadata": map[string]any{"name": "default"},
		"spec":     map[string]any{},
	}}
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "karpenter.sh/v1", "kind": "NodePool",
		"metadata": map[string]any{"name": KarpenterNodePool},
		"spec": map[string]any{
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{RevisionLabel: "1"}},
				"spec": map[string]any{
					"nodeClassRef": map[string]any{"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"},
					"requirements": []any{
						map[string]any{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": []any{"c-1x-amd64-linux", "c-2x-amd64-linux"}},
						map[string]any{"key": "karpenter.sh/capacity-type", "operator": "In", "values": []any{"on-demand"}},
						map[string]any{"key": "topology.kubernetes.io/zone", "operator": "In", "values": []any{"test-zone-a"}},
					},
					"expireAfter": "Never",
				},
			},
			"limits": map[string]any{"cpu": "16"},
			"disruption": map[string]any{
				"consolidationPolicy": "WhenEmptyOrUnderutilized",
				"consolidateAfter":    "Never",
				"budgets":             []any{map[string]any{"nodes": "100%"}},
			},
		},
	}}
	return []*unstructured.Unstructured{class, pool}
}

// startKarpenter installs Karpenter's CRDs and NodePool, then runs kube-scheduler (Karpenter
// provisions only for pods the scheduler found Unschedulable) and Karpenter's KWOK provider,
// whose Nodes kwok runs like the others.
func (c *Cluster) startKarpenter(ctx context.Context) error {
	dir := filepath.Join(c.opts.CacheDir, "karpenter-"+KarpenterVersion)
	scheduler := filepath.Join(c.opts.CacheDir, "kube-scheduler-"+KubernetesVersion, "kube-scheduler")
	for comp, b := range map[string]string{"karpenter": filepath.Join(dir, "karpenter"), "kube-scheduler": scheduler} {
		if err := checkBin(b, comp); err != nil {
			return err
		}
	}
	if err := c.createCRDFiles(ctx, filepath.Join(dir, "crds", "*.yaml"), "no Karpenter CRDs in "+dir+": run internal/localcluster/build-bins.sh karpenter"); err != nil {
		return err
	}
	for _, o := range karpenterObjects() {
		gvr := nodePoolGVR
		if o.GetKind() == "KWOKNodeClass" {
			gvr = nodeClassGVR
		}
		if _, err := c.dyn.Resource(gvr).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}

	schedPort, err := FreePort()
	if err != nil {
		return err
	}
	p, err := c.launch("kube-scheduler", scheduler, []string{
		"--kubeconfig=" + c.kubeconfig,
		"--authentication-kubeconfig=" + c.kubeconfig,
		"--authorization-kubeconfig=" + c.kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(schedPort),
		"--cert-dir=" + filepath.Join(c.dir, "scheduler-pki"),
	}, nil, 5*time.Second)
	if err != nil {
		return err
	}
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // its own self-signed cert
	if err := waitHTTP(ctx, p, "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz", insecure, 60*time.Second); err != nil {
		return err
	}

	metricsPort, err := FreePort()
	if err != nil {
		return err
	}
	healthPort, err := FreePort()
	if err != nil {
		return err
	}
	// Out of a cluster Karpenter takes its kubeconfig from the environment only, and needs leader
	// election off (it has no namespace to hold a lease in). Short batches make it provision
	// within seconds of a pod becoming Unschedulable.
	p, err = c.launch("karpenter", filepath.Join(dir, "karpenter"), nil, []string{
		"KUBECONFIG=" + c.kubeconfig,
		"DISABLE_LEADER_ELECTION=true",
		"METRICS_PORT=" + strconv.Itoa(metricsPort),
		"HEALTH_PROBE_PORT=" + strconv.Itoa(healthPort),
		"BATCH_IDLE_DURATION=1s",
		"BATCH_MAX_DURATION=3s",
		// Node repair (replace or reboot an unhealthy node, reason Unhealthy) is off by default.
		"FEATURE_GATES=NodeRepair=true",
	}, 10*time.Second)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, p, "http://127.0.0.1:"+strconv.Itoa(healthPort)+"/readyz", nil, 60*time.Second); err != nil {
		return err
	}
	return c.waitNodePoolReady(ctx, 60*time.Second)
}

// waitNodePoolReady waits until Karpenter validated the NodePool and found its NodeClass: before
// that it provisions nothing.
func (c *Cluster) waitNodePoolReady(ctx context.Context, timeout time.Duration) error {
	var last any
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		u, err := c.dyn.Resource(nodePoolGVR).Get(ctx, KarpenterNodePool, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		last = conds
		for _, ci := range conds {
			if m, _ := ci.(map[string]any); m["type"] == "Ready" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("nodepool %s not Ready (conditions %v): %w", KarpenterNodePool, last, err)
	}
	return nil
}

// DriftNodePool changes the NodePool's template (RevisionLabel): Karpenter then finds every node
// it launched before Drifted, launches replacements and drains the old ones.
func (c *Cluster) DriftNodePool(ctx context.Context, revision string) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"labels":{%q:%q}}}}}`, RevisionLabel, revision)
	if _, err := c.dyn.Resource(nodePoolGVR).Patch(ctx, KarpenterNodePool, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("drifting nodepool %s: %w", KarpenterNodePool, err)
	}
	return nil
}

// NodeClaimOf returns the name of the NodeClaim whose machine registered as Node node.
func (c *Cluster) NodeClaimOf(ctx context.Context, node string) (string, error) {
	list, err := c.dyn.Resource(nodeClaimGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing nodeclaims: %w", err)
	}
	for _, u := range list.Items {
		if n, _, _ := unstructured.NestedString(u.Object, "status", "nodeName"); n == node {
			return u.GetName(), nil
		}
	}
	return "", fmt.Errorf("no nodeclaim for node %s", node)
}

// DeleteNodeClaim deletes a NodeClaim as `kubectl delete nodeclaim` does: Karpenter's forceful
// path (no disruption command, the node drained and its instance terminated).
func (c *Cluster) DeleteNodeClaim(ctx context.Context, name string) error {
	if err := c.dyn.Resource(nodeClaimGVR).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting nodeclaim %s: %w", name, err)
	}
	return nil
}

// The Node conditions Karpenter's KWOK provider repairs (v1.15.0 RepairPolicies, tolerated 30 s):
// KWOKUnhealthy replaces the node, KWOKRebootRequired reboots it.
const (
	ConditionUnhealthy      = "KWOKUnhealthy"
	ConditionRebootRequired = "KWOKRebootRequired"
)

// SetNodeCondition sets a condition True on a Node's status, dated a minute ago so that the
// provider's toleration has already passed, as a node-problem detector reports a problem.
func (c *Cluster) SetNodeCondition(ctx context.Context, node, condition string) error {
	return c.patchNodeCondition(ctx, node, corev1.NodeCondition{Type: corev1.NodeConditionType(condition), Status: corev1.ConditionTrue,
		Reason: "E2E", Message: "set by the e2e test", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.NewTime(time.Now().Add(-time.Minute))})
}

// ClearNodeCondition sets a condition False, as the detector does once the problem is gone.
func (c *Cluster) ClearNodeCondition(ctx context.Context, node, condition string) error {
	return c.patchNodeCondition(ctx, node, corev1.NodeCondition{Type: corev1.NodeConditionType(condition), Status: corev1.ConditionFalse,
		Reason: "E2E", Message: "cleared by the e2e test", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()})
}

func (c *Cluster) patchNodeCondition(ctx context.Context, node string, cond corev1.NodeCondition) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return err
	}
	if _, err := c.kube.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("setting condition %s of node %s: %w", cond.Type, node, err)
	}
	return nil
}

// NodeBootID returns the boot ID a Node reports (Karpenter's KWOK provider changes it to reboot).
func (c *Cluster) NodeBootID(ctx context.Context, node string) (string, error) {
	n, err := c.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading node %s: %w", node, err)
	}
	return n.Status.NodeInfo.BootID, nil
}
